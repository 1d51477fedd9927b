"""Section 4 (question 4): Grad-CAM, SmoothGrad, Integrated Gradients, SHAP, Deep Dream, class models, occlusion."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from report.figures import figure
from report.parts import Section
from report.phrases import fmt, natural_key
from report.reading import Run


def further_sentences(run: Run) -> list[str]:
    """Integrated Gradients' completeness gap, Deep Dream's objective increase, class-model probabilities."""
    out = []
    ig = run.results.get("ig")
    if isinstance(ig, dict) and isinstance(ig.get("gap_mean"), (int, float)):
        out.append(f"Integrated Gradients ({ig.get('steps', '?')} steps, {ig.get('baseline', '?')} baseline) misses "
                   f"completeness by {100 * ig['gap_mean']:.2f}% on average and {100 * ig.get('gap_max', math.nan):.2f}% "
                   "at most: |sum of attributions - (F(x) - F(baseline))| / |F(x) - F(baseline)| on the target logit.")
    gc = run.results.get("gradcam")
    if isinstance(gc, dict) and gc.get("layer"):
        out.append(f"Grad-CAM uses layer {gc['layer']}.")
    dd = run.results.get("deepdream")
    if isinstance(dd, dict) and isinstance(dd.get("layers"), dict):
        bits = []
        for layer, r in sorted(dd["layers"].items(), key=lambda kv: natural_key(kv[0])):
            inc = [v for v in (r.get("increase") or []) if isinstance(v, (int, float)) and math.isfinite(v)]
            if inc:
                bits.append(f"{layer} by a factor of {fmt(min(inc), 1)} to {fmt(max(inc), 1)}")
        if bits:
            out.append(f"Deep Dream raised its objective ({dd.get('objective', 'l2')}) at " + "; at ".join(bits)
                       + " across the selected images.")
    oc = run.results.get("occlusion")
    if isinstance(oc, dict) and isinstance(oc.get("max_drop"), dict):
        drops = [v for v in oc["max_drop"].values() if isinstance(v, (int, float))]
        if drops:
            out.append(f"Occlusion ({oc.get('patch', '?')}-px patch, stride {oc.get('stride', '?')}): hiding the most "
                       f"important patch lowers the target probability by {fmt(min(drops), 2)} to {fmt(max(drops), 2)} "
                       f"(mean {fmt(float(np.mean(drops)), 2)}) over the {len(drops)} selected images.")
    cv = run.results.get("classviz")
    if isinstance(cv, dict):
        probs = {k: v for k, v in cv.items() if isinstance(v, (int, float))}
        if probs:
            lo, hi = min(probs, key=probs.get), max(probs, key=probs.get)
            if fmt(probs[lo]) == fmt(probs[hi]):
                out.append(f"Every one of the {len(probs)} class-model images reaches a probability of "
                           f"{fmt(probs[lo])} for its own class.")
            else:
                out.append(f"The class-model images reach a probability for their own class from {fmt(probs[lo])} "
                           f"({lo}) to {fmt(probs[hi])} ({hi}); median {fmt(float(np.median(list(probs.values()))))} "
                           f"over {len(probs)} classes.")
    return out


def shap_sentences(res: Any) -> list[str]:
    """SHAP (task shap's results): what it explains, with which masker and budget, and how its values add up."""
    if not isinstance(res, dict) or not isinstance(res.get("base_values"), dict) or not res["base_values"]:
        return []
    base = [v for v in res["base_values"].values() if isinstance(v, (int, float))]
    sums = [v for v in (res.get("sum") or {}).values() if isinstance(v, (int, float))]
    out = [f"SHAP (Lundberg & Lee 2017) uses the shap package's Partition explainer: Owen values of the explained "
           f"class's probability over a hierarchy of image rectangles, hidden with a {res.get('masker', '?')} masker, "
           f"{res.get('max_evals', '?')} model evaluations per image ({res.get('precision', 'fp32')}). Each map adds "
           f"up to p(image) - p(fully blurred image): the blurred image keeps a probability of {fmt(min(base), 2)} "
           f"to {fmt(max(base), 2)} over the {len(base)} selected images"
           + (f", and the maps sum to {fmt(min(sums), 2)} to {fmt(max(sums), 2)}" if sums else "") + "."]
    gap = res.get("additivity_gap_max")
    if isinstance(gap, (int, float)) and math.isfinite(gap):
        out.append(f"Against this run's own predictions the sums miss p(image) - p(blurred) by at most {gap:.1e}.")
    return out


def further_section(run: Run) -> Section:
    """Question 4: the further methods, with references."""
    s = Section("4. Further methods: Grad-CAM, SmoothGrad, Integrated Gradients, SHAP, Deep Dream, class models, "
                "occlusion", refs=["selvaraju", "smilkov", "sundararajan", "lundberg", "zeiler", "mordvintsev", "simonyan"])
    s.paragraphs.append(
        "Grad-CAM weights a convolutional layer's channels by their mean gradient; SmoothGrad averages gradients "
        "over noisy copies of the image; Integrated Gradients accumulates gradients along a path from a baseline "
        "image; occlusion measures the probability drop under a sliding grey patch; Deep Dream amplifies what a "
        "layer already sees in an image; class models synthesise an image the model rates as each class.")
    s.paragraphs.extend(further_sentences(run))
    s.paragraphs.extend(shap_sentences(run.results.get("shap")))
    for name in ("gradcam.png", "smoothgrad.png", "integrated_gradients.png", "shap.png", "attribution_comparison.png",
                 "occlusion.png", "deepdream.png", "class_models.png"):
        figure(run, name, s)
    return s
