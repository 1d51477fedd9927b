"""Section 4 (question 4): Grad-CAM, SmoothGrad, Integrated Gradients, SHAP, occlusion, Deep Dream, class models.

One short paragraph per method: what it shows on this model, its reference, and one finding in this run's numbers
(the method's own record, the where task's mass shares, trust.json). A paragraph appears only when its task ran;
intervals are quoted only from 5 images up."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

import metrics
from report.figures import figure
from report.parts import Section
from report.phrases import fmt, natural_key
from report.reading import Run

MIN_INTERVAL_N = metrics.MIN_INTERVAL_N   # below this many images a mean is quoted without an interval
REGION_WORDS = {"object": "on the object", "mark": "on the stamp", "background": "on the background",
                "centre": "in the centre", "border": "in the border band"}


def _num(x: Any) -> float | None:
    """x as a finite float, else None."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _pct(x: float) -> str:
    """0.6433 -> '64%', 0.0047 -> '0.5%'."""
    return f"{100 * x:.0f}%" if abs(x) >= 0.01 or x == 0 else f"{100 * x:.1f}%"


def mass_phrase(run: Run, method: str) -> tuple[int | None, str]:
    """From the where task: (images, 'puts 64% of its positive mass on the object (12% of the area) and 1% on the
    stamp (0.5% of the area)'), or (None, '')."""
    w = run.results.get("where")
    if not isinstance(w, dict) or not isinstance((w.get("methods") or {}).get(method), dict):
        return None, ""
    shares, area = w["methods"][method], w.get("area") or {}
    bits = []
    for r in w.get("regions") or []:
        v = _num(shares.get(r))
        if v is None or r == "background":
            continue
        a = _num(area.get(r))
        bits.append(f"{_pct(v)}{' of its positive mass' if not bits else ''} {REGION_WORDS.get(r, r)}"
                    + (f" ({_pct(a)} of the area)" if a is not None else ""))
    if not bits:
        return None, ""
    n = w.get("images") if isinstance(w.get("images"), int) else None
    return n, "puts " + " and ".join(bits)


def where_phrase(run: Run, method: str) -> str:
    """' On the 4 selected images it puts 64% of its positive mass on the object (12% of the area).' or ''."""
    n, mass = mass_phrase(run, method)
    if not mass:
        return ""
    return (f" On the {n} selected image{'s' * (n != 1)}" if n else " On the selected images") + f" it {mass}."


def trust_cell(run: Run, method: str, metric: str) -> tuple[float, float | None, float | None, int] | None:
    """(mean, lo, hi, n) of one trust metric from trust.json, lo/hi None below MIN_INTERVAL_N images; or None."""
    t = run.json_file("trust.json")
    cell = (((t or {}).get("methods") or {}).get(method) or {}).get(metric) if isinstance(t, dict) else None
    if not isinstance(cell, dict) or _num(cell.get("mean")) is None or not isinstance(cell.get("n"), int):
        return None
    n = cell["n"]
    lo, hi = (_num(cell.get("lo")), _num(cell.get("hi"))) if n >= MIN_INTERVAL_N else (None, None)
    return float(cell["mean"]), lo, hi, n


def cell_text(cell: tuple[float, float | None, float | None, int], digits: int = 2) -> str:
    """'0.52 [0.45, 0.60] (n = 8 images)' or '0.52 (n = 3 images)'."""
    mean, lo, hi, n = cell
    ci = f" [{fmt(lo, digits)}, {fmt(hi, digits)}]" if lo is not None and hi is not None else ""
    return f"{fmt(mean, digits)}{ci} (n = {n} image{'s' * (n != 1)})"


def gradcam_paragraph(run: Run) -> str | None:
    """Grad-CAM: layer, where its mass goes, the sanity check."""
    gc = run.results.get("gradcam")
    if not isinstance(gc, dict):
        return None
    text = (f"Grad-CAM (Selvaraju et al. 2017) weights the channels of layer {gc.get('layer', '?')} by their mean "
            "gradient and keeps the positive part: a coarse map of the regions that raise the class score.")
    text += where_phrase(run, "gradcam")
    trust = run.json_file("trust.json") or {}
    san = trust_cell(run, "gradcam", "sanity_spearman")
    verdict = ((trust.get("methods") or {}).get("gradcam") or {}).get("sanity_check")
    limit = _num((trust.get("sanity") or {}).get("threshold"))
    if san is not None and verdict in ("passes", "fails sanity check"):
        text += (" With every layer's weights re-initialised, its map correlates with the trained model's at "
                 f"Spearman {cell_text(san)}")
        if san[3] < MIN_INTERVAL_N:
            text += ", too few images for a verdict on the sanity check of Adebayo et al. 2018."
        else:
            text += (f": it {'fails' if verdict != 'passes' else 'passes'} the sanity check of Adebayo et al. 2018"
                     + (f", which fails a map at {limit:g} or above." if limit is not None else "."))
    return text


def smoothgrad_paragraph(run: Run) -> str | None:
    """SmoothGrad: its samples and noise, where its mass goes, seed stability."""
    sg = run.results.get("smoothgrad")
    if not isinstance(sg, dict):
        return None
    text = (f"SmoothGrad (Smilkov et al. 2017) averages the vanilla gradient over {sg.get('n', '?')} copies of the "
            f"image with Gaussian noise of {sg.get('sigma', '?')} of the pixel range, to average out the "
            "gradient's pixel-level noise.")
    text += where_phrase(run, "smoothgrad")
    st = ((run.json_file("trust.json") or {}).get("stability") or {}).get("smoothgrad")
    if isinstance(st, dict) and _num(st.get("spearman_mean")) is not None:
        text += (f" Two seeds give maps that agree at Spearman {fmt(st['spearman_mean'], 2)} on average on the "
                 f"{st.get('n', '?')} images of the figures.")
    return text


def ig_paragraph(run: Run) -> str | None:
    """Integrated Gradients: path and completeness."""
    ig = run.results.get("ig")
    if not isinstance(ig, dict) or _num(ig.get("gap_mean")) is None:
        return None
    text = (f"Integrated Gradients (Sundararajan et al. 2017) sums gradients along {ig.get('steps', '?')} steps of the "
            f"straight path from a {ig.get('baseline', '?')} image to the input, so its map adds up to the change of "
            f"the target logit; here it misses completeness by {100 * ig['gap_mean']:.2f}% on average and "
            f"{100 * (_num(ig.get('gap_max')) or math.nan):.2f}% at most (|sum of attributions - (F(x) - "
            "F(baseline))| / |F(x) - F(baseline)|).")
    text += where_phrase(run, "integrated_gradients")
    return text


def shap_sentences(res: Any) -> list[str]:
    """SHAP (task shap's results): what it explains, with which masker and budget, and how its values add up."""
    if not isinstance(res, dict) or not isinstance(res.get("base_values"), dict) or not res["base_values"]:
        return []
    base = [v for v in res["base_values"].values() if isinstance(v, (int, float))]
    sums = [v for v in (res.get("sum") or {}).values() if isinstance(v, (int, float))]
    masker = res.get("masker", "?")
    masker = "blur masker (kernel half the image side)" if masker == "auto" else f"{masker} masker"
    out = [f"SHAP (Lundberg & Lee 2017), the shap package's Partition explainer, gives Owen values of the explained "
           f"class's probability over a hierarchy of image rectangles hidden with a {masker}, "
           f"{res.get('max_evals', '?')} model evaluations per image ({res.get('precision', 'fp32')})."]
    text = (f"Each map adds up to p(image) - p(fully blurred image): the blurred image keeps a probability of "
            f"{fmt(min(base), 2)} to {fmt(max(base), 2)} over the {len(base)} selected images"
            + (f", the maps sum to {fmt(min(sums), 2)} to {fmt(max(sums), 2)}" if sums else ""))
    gap = res.get("additivity_gap_max")
    if isinstance(gap, (int, float)) and math.isfinite(gap):
        text += f", and the sums miss this run's own p(image) - p(blurred) by at most {gap:.1e}"
    return out + [text + "."]


def shap_paragraph(run: Run) -> str | None:
    """SHAP: the explainer, its additivity, where its mass goes."""
    bits = shap_sentences(run.results.get("shap"))
    if not bits:
        return None
    return " ".join(bits) + where_phrase(run, "shap")


def occlusion_outlier(run: Run) -> str:
    """One sentence on an image where occlusion's deletion curve stays high because of its map, only when trust.json
    shows one: an unsaturated image with an object mask whose occlusion MoRF AUC is at least 0.5 and twice occlusion's
    median, where the other methods' median AUC is at most half of it (the model does lose the class when the right
    pixels go) and occlusion's mass on the object is at most half its median. The highest such curve; else ''."""
    per = (run.json_file("trust.json") or {}).get("per_image") or {}
    oc = per.get("occlusion")
    if not isinstance(oc, dict) or not oc.get("files") or len(oc.get("deletion_auc") or []) != len(oc["files"]):
        return ""
    sat = oc.get("saturated") or [False] * len(oc["files"])
    rows = [(f, float(a)) for f, a, s in zip(oc["files"], oc["deletion_auc"], sat) if _num(a) is not None and not s]
    gt, mass = oc.get("gt_files") or [], oc.get("mass_in_mask") or []
    on_obj = {f: float(m) for f, m in zip(gt, mass) if _num(m) is not None}
    if len(rows) < 3 or len(on_obj) < 3:
        return ""
    median, mass_median = float(np.median([a for _, a in rows])), float(np.median(list(on_obj.values())))

    def others(file: str) -> list[float]:
        out = []
        for m, sc in per.items():
            if m in ("occlusion", "random") or not isinstance(sc, dict) or file not in (sc.get("files") or []):
                continue
            aucs, i = sc.get("deletion_auc") or [], sc["files"].index(file)
            if i < len(aucs) and _num(aucs[i]) is not None:
                out.append(float(aucs[i]))
        return out

    hits = [(a, f, float(np.median(others(f)))) for f, a in rows
            if a >= max(0.5, 2 * median) and f in on_obj and on_obj[f] <= mass_median / 2 and others(f)
            and float(np.median(others(f))) <= a / 2]
    if not hits:
        return ""
    auc, file, rest = max(hits)
    return (f"On {file} its deletion curve stays high (MoRF AUC {fmt(auc, 2)} against its median {fmt(median, 2)} "
            f"over {len(rows)} unsaturated images; median {fmt(rest, 2)} for the other methods there) because of its "
            f"map, not the model: there it puts only {_pct(on_obj[file])} of its mass on the object (median "
            f"{_pct(mass_median)}), so deletion removes the background first, as one patch at a time cannot hide "
            "evidence that the object's texture repeats across many patches.")


def occlusion_paragraph(run: Run) -> str | None:
    """Occlusion: patch, drops, where its mass goes, the outlier curve."""
    oc = run.results.get("occlusion")
    if not isinstance(oc, dict):
        return None
    text = (f"Occlusion (Zeiler & Fergus 2014) slides a {oc.get('patch', '?')}-px grey patch with stride "
            f"{oc.get('stride', '?')} over the image and maps the drop of the target probability, with no gradient.")
    drops = [v for v in (oc.get("max_drop") or {}).values() if _num(v) is not None]
    if drops:
        text += (f" Hiding the most important patch lowers the probability by {fmt(min(drops), 2)} to "
                 f"{fmt(max(drops), 2)} (mean {fmt(float(np.mean(drops)), 2)}) over the {len(drops)} selected images")
        _, mass = mass_phrase(run, "occlusion")
        text += f", and its map {mass}." if mass else "."
    else:
        text += where_phrase(run, "occlusion")
    outlier = occlusion_outlier(run)
    return text + (f" {outlier}" if outlier else "")


def deepdream_paragraph(run: Run) -> str | None:
    """Deep Dream: its objective's increase per layer."""
    dd = run.results.get("deepdream")
    if not isinstance(dd, dict) or not isinstance(dd.get("layers"), dict):
        return None
    bits = []
    for layer, r in sorted(dd["layers"].items(), key=lambda kv: natural_key(kv[0])):
        inc = [v for v in (r.get("increase") or []) if _num(v) is not None]
        if inc:
            bits.append(f"{layer} by a factor of {fmt(min(inc), 1)} to {fmt(max(inc), 1)}")
    n = len(dd.get("images") or [])
    text = (f"Deep Dream (Mordvintsev et al. 2015) changes the image itself by gradient ascent on the "
            f"{dd.get('objective', 'l2')} norm of a layer's activations over {run.setting('dream_octaves', '?')} "
            "scales, so it amplifies the patterns the layer already sees in the food.")
    if bits:
        text += (" Its objective rose at " + "; at ".join(bits)
                 + (f" across the {n} selected images" if n else " across the selected images") + ".")
    return text


def classviz_paragraph(run: Run) -> str | None:
    """Class models: the probability each reached."""
    cv = run.results.get("classviz")
    if not isinstance(cv, dict):
        return None
    reached = cv.get("reached") if isinstance(cv.get("reached"), dict) else cv
    probs = {k: float(v) for k, v in reached.items() if _num(v) is not None}
    if not probs:
        return None
    objective = {"logprob": "log-probability", "logit": "logit"}.get(str(run.setting("classviz_objective")),
                                                                      "score")
    text = (f"Class models (Simonyan et al. 2014) optimise an image from grey noise for one class's {objective} with "
            "an L2 penalty: what the model takes as the ideal of each class.")
    lo, hi = min(probs, key=probs.get), max(probs, key=probs.get)
    if fmt(probs[lo]) == fmt(probs[hi]):
        text += f" Every one of the {len(probs)} class-model images reaches a probability of {fmt(probs[lo])}."
    else:
        text += (f" The images reach a probability for their own class from {fmt(probs[lo])} ({lo}) to "
                 f"{fmt(probs[hi])} ({hi}); median {fmt(float(np.median(list(probs.values()))))} over {len(probs)} "
                 "classes.")
    return text


PARAGRAPHS = (gradcam_paragraph, smoothgrad_paragraph, ig_paragraph, shap_paragraph, occlusion_paragraph,
              deepdream_paragraph, classviz_paragraph)


def further_sentences(run: Run) -> list[str]:
    """One paragraph per further method whose task ran."""
    return [p for make in PARAGRAPHS if (p := make(run))]


def further_section(run: Run) -> Section:
    """Question 4: the further methods, with references."""
    s = Section("4. Further methods: Grad-CAM, SmoothGrad, Integrated Gradients, SHAP, occlusion, Deep Dream, class "
                "models", refs=["selvaraju", "smilkov", "sundararajan", "lundberg", "zeiler", "mordvintsev", "simonyan",
                      "adebayo"])
    s.paragraphs.extend(further_sentences(run))
    if not s.paragraphs:
        s.notes.append("None of the further methods ran in this run.")
    for name in ("gradcam.png", "smoothgrad.png", "integrated_gradients.png", "shap.png", "attribution_comparison.png",
                 "occlusion.png", "deepdream.png", "class_models.png"):
        figure(run, name, s)
    return s
