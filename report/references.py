"""The literature the report's sections cite, by key."""

REFERENCES = {
    "simonyan": "K. Simonyan, A. Vedaldi, A. Zisserman. Deep Inside Convolutional Networks: Visualising Image "
                "Classification Models and Saliency Maps. ICLR workshop 2014.",
    "smilkov": "D. Smilkov, N. Thorat, B. Kim, F. Viegas, M. Wattenberg. SmoothGrad: removing noise by adding "
               "noise. arXiv:1706.03825, 2017.",
    "sundararajan": "M. Sundararajan, A. Taly, Q. Yan. Axiomatic Attribution for Deep Networks (Integrated "
                    "Gradients). ICML 2017.",
    "selvaraju": "R. R. Selvaraju et al. Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
                 "Localization. ICCV 2017.",
    "ribeiro": "M. T. Ribeiro, S. Singh, C. Guestrin. \"Why Should I Trust You?\": Explaining the Predictions of "
               "Any Classifier (LIME). KDD 2016.",
    "achanta": "R. Achanta et al. SLIC Superpixels Compared to State-of-the-Art Superpixel Methods. TPAMI 2012.",
    "erhan": "D. Erhan, Y. Bengio, A. Courville, P. Vincent. Visualizing Higher-Layer Features of a Deep "
             "Network. Technical report 1341, Univ. Montreal, 2009.",
    "olah": "C. Olah, A. Mordvintsev, L. Schubert. Feature Visualization. Distill 2017.",
    "mordvintsev": "A. Mordvintsev, C. Olah, M. Tyka. Inceptionism: Going Deeper into Neural Networks. Google "
                   "Research blog 2015 (Deep Dream).",
    "zeiler": "M. D. Zeiler, R. Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014.",
    "petsiuk": "V. Petsiuk, A. Das, K. Saenko. RISE: Randomized Input Sampling for Explanation of Black-box "
               "Models. BMVC 2018.",
    "adebayo": "J. Adebayo et al. Sanity Checks for Saliency Maps. NeurIPS 2018.",
    "zhang": "J. Zhang et al. Top-down Neural Attention by Excitation Backprop (pointing game). ECCV 2016.",
    "lundberg": "S. M. Lundberg, S.-I. Lee. A Unified Approach to Interpreting Model Predictions (SHAP). NeurIPS 2017.",
}
