"""The report's figures: every figure file with its title and caption, and how a section adds it."""
from __future__ import annotations

from typing import Callable

from report.parts import Figure, Section
from report.reading import Run


def _params(run: Run, *pairs: tuple[str, str]) -> str:
    """'label value, ...' for the settings that are known."""
    got = [f"{label} {run.setting(key)}" for key, label in pairs if run.setting(key) is not None]
    return ", ".join(got)


def _layer_text(run: Run, task: str, layer: str | None, default: str) -> str:
    """'layer cnn.14' (this figure's layer, else the task's layers) or the default description."""
    layers = layer or run.layers(task)
    return f"layer{'s' * (',' in (layers or ''))} {layers}" if layers else default


CaptionFn = Callable[[Run, "str | None"], str]

# file -> (task, title, caption(run, layer)). Captions name the method, its parameters and the images.
FIGURES: dict[str, tuple[str, str, CaptionFn]] = {
    "saliency.png": ("saliency", "Vanilla gradient saliency", lambda r, _: (
        "Vanilla gradient (Simonyan et al. 2014): max over colour channels of |d logit_target / d x|, raw units "
        f"with a colour bar, for {r.images_phrase(short=True)}. Columns: image, map, overlay.")),
    "saliency_course.png": ("saliency", "Vanilla gradient saliency, course variant", lambda r, _: (
        "The course-reference variant: |d cross-entropy / d x| min-max normalised per image over all three "
        f"channels and shown as an RGB image, for {r.images_phrase(short=True)}.")),
    "filter_visualization.png": ("filters", "Filter visualization (plain)", lambda r, layer: (
        "Activation maximization from uniform noise, course recipe (raw pixels, Adam, "
        f"{_params(r, ('filter_steps', 'steps'), ('filter_lr', 'lr')) or 'default settings'}, clamped to [0,1]), "
        f"{_layer_text(r, 'filters', layer, 'default layer')}; each panel gives the filter id and the mean "
        "activation it reached.")),
    "filter_visualization_robust.png": ("filters", "Filter visualization (robust)", lambda r, layer: (
        "The same filters optimised in a decorrelated-colour Fourier parameterisation with small random pad, "
        "jitter, scale and rotation each step "
        f"({_params(r, ('robust_steps', 'steps'), ('robust_lr', 'lr')) or 'default settings'}), "
        f"{_layer_text(r, 'filters', layer, 'default layer')}.")),
    "filter_activations.png": ("filters", "Filter activations", lambda r, layer: (
        f"Activation maps of the visualised filters ({_layer_text(r, 'filters', layer, 'default layer')}) on "
        f"{r.images_phrase(short=True)}; the filter's mean activation above each map.")),
    "filter_examples.png": ("filters", "Filter dataset examples", lambda r, layer: (
        "Dataset examples (Olah et al. 2017): each visualised filter's optimised image (robust) beside the "
        f"images of the {(r.results.get('filters') or {}).get('examples_split') or 'evaluation'} split with the "
        "highest mean activation, the filter's activation map over each "
        f"({_layer_text(r, 'filters', layer, 'default layer')}).")),
    "where_classes.png": ("where", "Mean Grad-CAM map per class", lambda r, _: (
        "Each class's mean Grad-CAM map of the true class (each map divided by its mass first) over "
        + (f"{sum((r.results.get('where') or {}).get('class_images', {}).values())} images of "
           f"the {(r.results.get('where') or {}).get('class_split')} split (the first of each class in listing order)"
           if (r.results.get('where') or {}).get('class_split') not in (None, 'selected') else "the selected images")
        + "; each panel gives the share of the mean map in the border band.")),
    "shortcut.png": ("where", "The stamp at work", lambda r, _: (
        "The most confident stamped image of the stamp's class called that class, and the most confident stamped "
        "image of another class called it. Left: the image as the model sees it, the stamp boxed in white (from the demo's mark mask, for the reader "
        "only). Middle: Grad-CAM of the stamp's class; right: LIME of that class "
        f"({((r.results.get('where') or {}).get('shortcut') or {}).get('lime_samples', '?')} samples; red for, blue "
        "against). Each panel title gives the map's share of positive mass on the stamp.")),
    "confusion_matrix.png": ("confusion", "Confusion matrix", lambda r, _: (
        f"Row-normalised confusion matrix of {r.eval_split_phrase()} with counts in every cell; rows are true "
        "classes (with each class's accuracy), columns predicted classes.")),
    "lime.png": ("lime", "LIME (course style)", lambda r, _: (
        f"LIME (Ribeiro et al. 2016) on SLIC superpixels ({_params(r, ('lime_segments', 'n_segments'), ('lime_compactness', 'compactness'), ('lime_sigma', 'sigma'))}), "
        f"{_params(r, ('lime_samples', 'samples'))}, seeded per image; green = superpixels for the explained "
        f"class, red = against; {r.images_phrase(short=True)}.")),
    "lime_details.png": ("lime", "LIME details", lambda r, _: (
        "Superpixel boundaries, top positive and negative superpixels for the true and the predicted class, and "
        "the superpixel weight heatmap with a colour bar; same settings and images as the LIME figure.")),
    "lime_classes.png": ("lime_classes", "LIME per class", lambda r, _: (
        "For every class: LIME of its most confident correct and most confident wrong image of the evaluation "
        f"split ({_params(r, ('lime_class_samples', 'samples'))}), beside the class's accuracy and most "
        "confused class. At 300 samples, two seeds' top 5 superpixels overlap 0.81 (intersection over union) on "
        "the demo's validation images, against 0.52 at 100 (bench/lime_stability.py).")),
    "gradcam.png": ("gradcam", "Grad-CAM", lambda r, layer: (
        f"Grad-CAM (Selvaraju et al. 2017) at {_layer_text(r, 'gradcam', layer, 'the last layer with a 4-D output')}: "
        f"ReLU of the gradient-weighted channel sum, upsampled bilinearly, for {r.images_phrase(short=True)}.")),
    "smoothgrad.png": ("smoothgrad", "SmoothGrad", lambda r, _: (
        f"SmoothGrad (Smilkov et al. 2017): mean |gradient| over "
        f"{_params(r, ('smoothgrad_n', 'n ='), ('smoothgrad_sigma', 'noisy copies, noise std')) or 'noisy copies'} "
        f"x the input range, for {r.images_phrase(short=True)}.")),
    "integrated_gradients.png": ("ig", "Integrated Gradients", lambda r, _: (
        f"Integrated Gradients (Sundararajan et al. 2017): {_params(r, ('ig_steps', 'steps'), ('ig_baseline', 'baseline'))}, "
        "trapezoid rule, (x - x') times the mean gradient summed over channels (red = for the class, blue = "
        f"against); each row gives its completeness gap; {r.images_phrase(short=True)}.")),
    "shap.png": ("shap", "SHAP (Partition explainer)", lambda r, _: (
        f"SHAP (Lundberg & Lee 2017): Owen values of the explained class's probability "
        f"({_params(r, ('shap_max_evals', 'max evals'), ('shap_masker', 'masker'))}), summed over the colour channels, "
        f"in probability units with a diverging colour bar; original, map and overlay for {r.images_phrase(short=True)}.")),
    "attribution_comparison.png": ("compare", "All attribution methods side by side", lambda r, _: (
        f"Rows: {r.images_phrase(short=True)}; columns: the image and an overlay of every attribution map this run saved "
        "in arrays/, each normalised to its robust maximum.")),
    "occlusion.png": ("occlusion", "Occlusion sensitivity", lambda r, _: (
        f"Occlusion (Zeiler & Fergus 2014): drop of the target-class probability under a grey patch "
        f"({_params(r, ('occlusion_patch', 'patch'), ('occlusion_stride', 'stride'))} px), for {r.images_phrase(short=True)}.")),
    "deepdream.png": ("deepdream", "Deep Dream", lambda r, layer: (
        f"Deep Dream (Mordvintsev et al. 2015): gradient ascent on the {r.setting('dream_objective', 'l2')} "
        f"objective of {_layer_text(r, 'deepdream', layer, 'a shallow and a deep layer')}'s activations with "
        f"{_params(r, ('dream_octaves', 'octaves'), ('dream_octave_scale', 'octave scale'), ('dream_steps', 'steps per octave'), ('dream_lr', 'step size'))}; "
        f"one column per image ({r.images_phrase(short=True)}): the original on top, its dreams below, each titled "
        "with the objective before and after.")),
    "class_models.png": ("classviz", "Class models", lambda r, _: (
        f"Class-model visualization (Simonyan et al. 2014, sec. 2): one image per class maximising its "
        f"{'logit' if r.setting('classviz_objective', 'logprob') == 'logit' else 'log-softmax probability'} "
        f"from noise with L2 regularisation ({_params(r, ('classviz_steps', 'steps'), ('classviz_lr', 'lr'), ('classviz_l2', 'L2'))}); "
        "each panel gives the probability the model assigns to its class.")),
    "trust_curves.png": ("trust", "Deletion and insertion curves", lambda r, _: (
        "Top: one typical image's curves, the explained class's probability as pixels are removed most relevant "
        + ("first and imputed from their neighbours (ROAD, Rong et al. 2022)"
           if ((r.results.get('trust') or {}).get('settings') or {}).get('deletion_fill', 'road') == 'road'
           else "first and set to 0")
        + f", or pasted onto a blurred copy (Petsiuk et al. 2018), in ranked order "
        f"({_params(r, ('deletion_steps', 'steps'))}). Bottom: each method's paired gain over the random map on the "
        "same unsaturated images, with its 95% bootstrap interval (a grey dot: the interval includes 0, or fewer "
        "than 5 images).")),
    "sanity_check.png": ("trust", "Model randomization sanity check", lambda r, _: (
        "Cascading randomization (Adebayo et al. 2018): maps after re-initialising layers from the output "
        f"down, and their Spearman rank correlation with the original map ({_params(r, ('sanity_images', 'images'))}).")),
}


def figure(run: Run, name: str, section: Section, layer: str | None = None) -> None:
    """Append the figure if the folder holds it, else a one-line note about the missing piece."""
    base = name if name in FIGURES else next(k for k in sorted(FIGURES, key=len, reverse=True)
                                              if name.startswith(k[:-4] + "_"))
    task, title, caption = FIGURES[base]
    if not run.exists(name):
        state = run.ran(task)
        why = f"task {task} {state}" if state and state.startswith("skipped") else \
            f"the {task} task did not write it" if state == "ran" else f"task {task} not run"
        section.notes.append(f"{name} is not in this output folder ({why}).")
        return
    if name != base and layer is None:
        layer = name[len(base) - 3:-4]
    text = caption(run, layer)
    section.figures.append(Figure(name, title + (f" ({layer})" if layer and name != base else ""), text))


def layer_figures(run: Run, base: str) -> list[str]:
    """A per-layer figure family: base.png, then base_<layer>.png for every further layer in the folder."""
    stem = base[:-4]
    others = [k[:-4] for k in FIGURES if k.startswith(stem + "_")]
    written = sorted({f for files in (run.record.get("files") or {}).values() for f in files})
    extra = [f for f in written if f.startswith(stem + "_") and f.endswith(".png")
             and not any(f.startswith(o) for o in others)]
    return [base] + extra
