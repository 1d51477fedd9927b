"""The report's content: sections of sentences, tables and captioned figures, filled from one output folder.

Every number in a sentence comes from this run's files or run record; a missing file or task is left out with a
one-line note. Pure functions: (output folder, run record) -> Report; drawing lives in render_pdf.py and render_html.py.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class Figure:
    """One figure file of the output folder with its caption."""

    file: str
    title: str
    caption: str


@dataclass
class Table:
    """A small text table."""

    header: list[str]
    rows: list[list[str]]
    title: str = ""


@dataclass
class Section:
    """A report section: sentences, tables, notes on missing pieces, figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)   # keys of REFERENCES


@dataclass
class Report:
    """The whole report."""

    title: str
    subtitle: str
    sections: list[Section]


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

METHOD_NAMES = {
    "vanilla": "Vanilla gradient", "smoothgrad": "SmoothGrad", "integrated_gradients": "Integrated Gradients",
    "gradcam": "Grad-CAM", "lime": "LIME", "occlusion": "Occlusion", "shap": "SHAP", "random": "Random map",
}
METRIC_NAMES = {
    "deletion_auc": "deletion AUC", "insertion_auc": "insertion AUC", "pointing_game": "pointing game",
    "mass_in_mask": "mass in mask", "mass_in_mask_ratio": "mass / mask share", "sanity_spearman": "sanity Spearman",
}
# task results that have their own sentences (others are listed in the appendix as they are)
KNOWN_RESULTS = {"where", "shap", "audit", "confusion", "filters", "lime", "lime_classes", "ig", "gradcam", "occlusion", "deepdream", "classviz",
                 "trust"}


# ---------------------------------------------------------------- reading the folder

def read_json(path: Path) -> Any:
    """A JSON file, or None when missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_confusion(path: Path) -> tuple[list[str], np.ndarray] | None:
    """Class names and counts[true, pred] from confusion_matrix.csv, or None."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        names = rows[0][1:]
        counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]], dtype=np.int64)
    except (OSError, ValueError, IndexError):
        return None
    if counts.shape != (len(names), len(names)):
        return None
    return names, counts


def _stat(v: dict[str, Any]) -> tuple[float, float | None, int] | None:
    """(mean, std, n) of a trust.json cell {"mean", "std", "n"}; None when it holds no value."""
    if v.get("mean") is None:
        return None
    return float(v["mean"]), (None if v.get("std") is None else float(v["std"])), int(v["n"])


def trust_table(obj: dict[str, Any]) -> dict[str, dict[str, tuple[float, float | None, int]]]:
    """method -> metric -> (mean, std, n) from trust.json's "methods" (in its order: the random baseline last)."""
    table = {}
    for method, row in obj["methods"].items():
        stats = {m: st for m, st in ((m, _stat(row[m])) for m in METRIC_NAMES if m in row) if st}
        if stats:
            table[method] = stats
    return dict(sorted(table.items(), key=lambda kv: kv[0] == "random"))


# ---------------------------------------------------------------- small text helpers

def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a sentence ('-' when missing)."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def method_name(key: str) -> str:
    """Display name of a method key (`gradcam` -> Grad-CAM)."""
    return METHOD_NAMES.get(key, key.replace("_", " "))


def join_names(items: list[str], limit: int = 4) -> str:
    """'A', 'A and B', 'A, B and C', or 'A, B, C, D and 2 more'."""
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def natural_key(text: str) -> list:
    """Sort key that orders cnn.6 before cnn.19."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def class_name(names: list[str], c: int) -> str:
    """Class name of an id ('?' for unknown)."""
    return names[c] if 0 <= c < len(names) else ("?" if c < 0 else f"class {c}")


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of nested task results as (dotted key, value text)."""
    if not prefix and not isinstance(obj, dict):
        return []
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in flatten(v, f"{prefix}{k}.")]
    if isinstance(obj, float):
        return [(prefix[:-1], fmt(obj, 4))]
    if isinstance(obj, (int, str, bool)) or obj is None:
        return [(prefix[:-1], str(obj))]
    if isinstance(obj, list) and len(obj) <= 8 and all(isinstance(x, (int, float, str)) for x in obj):
        return [(prefix[:-1], ", ".join(fmt(x, 4) if isinstance(x, float) else str(x) for x in obj))]
    return []


# ---------------------------------------------------------------- the run's context

@dataclass
class Run:
    """What the report knows about the run: the run record (run.json's keys) and the output folder."""

    out: Path
    record: dict

    @property
    def settings(self) -> dict:
        """Settings actually used ({} when unknown)."""
        return self.record.get("settings") or {}

    @property
    def results(self) -> dict:
        """Numbers the tasks recorded."""
        return self.record.get("results") or {}

    @property
    def class_names(self) -> list[str]:
        """Class names from the run record, else from confusion_matrix.csv."""
        if self.record.get("class_names"):
            return list(self.record["class_names"])
        cm = self.confusion()
        return cm[0] if cm else []

    def confusion(self) -> tuple[list[str], np.ndarray] | None:
        """This run's confusion_matrix.csv (class names, counts), or None."""
        return read_confusion(self.out / "confusion_matrix.csv") if self.fresh("confusion_matrix.csv") else None

    def json_file(self, name: str) -> Any:
        """A JSON file this run wrote (e.g. trust.json), or None."""
        return read_json(self.out / name) if self.fresh(name) else None

    def exists(self, name: str) -> bool:
        """Whether this run wrote the file (run.json's per-task file lists) and it is in the output folder."""
        return self.fresh(name) and (self.out / name).is_file()

    def ran(self, task: str) -> str | None:
        """'ran', 'skipped: why', or None when the run record lists the task as not run (or is absent)."""
        what = (self.record.get("tasks") or {}).get(task)
        if what is None:
            return None
        return what if str(what).startswith("skipped") else "ran"

    def fresh(self, name: str) -> bool:
        """Whether the run record lists the file among those its tasks wrote."""
        return any(name in files for files in (self.record.get("files") or {}).values())

    def setting(self, key: str, default: Any = None) -> Any:
        """One setting, or default."""
        return self.settings.get(key, default)

    def images(self) -> list[dict]:
        """The explained images: file, label, pred, target (from the run record)."""
        return list(self.record.get("images") or [])

    def images_phrase(self, short: bool = False) -> str:
        """'the 4 selected images (a.jpg: true Bread, predicted Bread; ...)', or with file names only."""
        imgs = self.images()
        if not imgs:
            return "the selected images"
        if short:
            names = ", ".join(Path(im["file"]).name for im in imgs)
            return f"the {len(imgs)} selected image{'s' * (len(imgs) != 1)} ({names})"
        names = self.class_names
        parts = []
        for im in imgs:
            bits = []
            if im.get("label", -1) >= 0:
                bits.append(f"true {class_name(names, im['label'])}")
            bits.append(f"predicted {class_name(names, im['pred'])}")
            if im.get("target", -1) not in (im.get("label", -1), -1):
                bits.append(f"explaining {class_name(names, im['target'])}")
            parts.append(f"{Path(im['file']).name}: {', '.join(bits)}")
        return f"the {len(imgs)} selected image{'s' * (len(imgs) != 1)} ({'; '.join(parts)})"

    def eval_split_phrase(self) -> str:
        """'the whole validation split (230 images)' from the confusion task's record and CSV."""
        res = self.results.get("confusion") or {}
        cm = self.confusion()
        n = res.get("images") or (int(cm[1].sum()) if cm else None)
        split = res.get("split") or "evaluation"
        return f"the whole {split} split" + (f" ({n} images)" if n else "")

    def layers(self, task: str) -> str | None:
        """Layer name(s) a task recorded: Grad-CAM's `layer`, the filters' and Deep Dream's `layers`; else None."""
        res = self.results.get(task)
        if not res:
            return None
        if task == "gradcam":
            return res["layer"]
        return ", ".join(sorted(res["layers"], key=natural_key)) or None


# ---------------------------------------------------------------- figures and captions

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
        f"images of {(r.results.get('filters') or {}).get('examples_split') or 'the evaluation split'}/ with the "
        "highest mean activation, the filter's activation map over each "
        f"({_layer_text(r, 'filters', layer, 'default layer')}).")),
    "where_classes.png": ("where", "Mean Grad-CAM map per class", lambda r, _: (
        "Each class's mean Grad-CAM map of the true class (each map divided by its mass first) over "
        + (f"{sum((r.results.get('where') or {}).get('class_images', {}).values())} images of "
           f"{(r.results.get('where') or {}).get('class_split')}/ (the first of each class in listing order)"
           if (r.results.get('where') or {}).get('class_split') not in (None, 'selected') else "the selected images")
        + "; each panel gives the share of the mean map in the border band.")),
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
        "confused class.")),
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
        f"original vs dreamed for {r.images_phrase(short=True)}, each titled with the objective before and after.")),
    "class_models.png": ("classviz", "Class models", lambda r, _: (
        f"Class-model visualization (Simonyan et al. 2014, sec. 2): one image per class maximising its "
        f"{'logit' if r.setting('classviz_objective', 'logprob') == 'logit' else 'log-softmax probability'} "
        f"from noise with L2 regularisation ({_params(r, ('classviz_steps', 'steps'), ('classviz_lr', 'lr'), ('classviz_l2', 'L2'))}); "
        "each panel gives the probability the model assigns to its class.")),
    "trust_curves.png": ("trust", "Deletion and insertion curves", lambda r, _: (
        "Deletion and insertion curves (Petsiuk et al. 2018): target-class probability as pixels are removed (set "
        f"to 0) or inserted onto a blurred copy in ranked order ({_params(r, ('deletion_steps', 'steps'))}), "
        "every method against a random map.")),
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


def results_table(run: Run, task: str, title: str) -> Table | None:
    """Scalar numbers a task recorded (for tasks without a dedicated sentence template)."""
    rows = [[k, v] for k, v in flatten(run.results.get(task))][:24]
    return Table(["quantity", "value"], rows, title) if rows else None


# ---------------------------------------------------------------- the sections

def _mean(xs: Any) -> float | None:
    """Mean of a list of numbers (None when empty or not numbers)."""
    try:
        arr = np.asarray(xs, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 1:
        return None
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None


def saliency_section(run: Run) -> Section:
    """Question 1: where does the model look?"""
    s = Section("1. Saliency maps: where does the model look?", refs=["simonyan"])
    s.paragraphs.append(
        "A saliency map shows how strongly each pixel changes the score of the explained class: the gradient of the "
        "class logit with respect to the input image (Simonyan et al. 2014). Bright pixels are those whose small "
        "changes move the score most.")
    imgs = run.images()
    if imgs:
        labelled = [im for im in imgs if im.get("label", -1) >= 0]
        text = f"This run explains {run.images_phrase()}."
        if labelled:
            right = sum(im["label"] == im["pred"] for im in labelled)
            text += f" The model classifies {right} of the {len(labelled)} labelled images correctly."
        target = (run.record.get("arguments") or {}).get("target")
        text += (f" Maps explain the class chosen by --target {target}." if target else
                 " Maps explain the true class where it is known, else the predicted class.")
        s.paragraphs.append(text)
    where = run.results.get("where")
    if isinstance(where, dict) and where.get("methods"):
        s.paragraphs.extend(where_sentences(where))
        s.tables.append(where_table(where))
    else:
        state = run.ran("where")
        s.notes.append("No measure of where the maps put their mass (" + (
            f"task where {state}" if state and state != "ran" else "task where not run") + ").")
    figure(run, "saliency.png", s)
    if run.exists("saliency_course.png"):
        figure(run, "saliency_course.png", s)
    if run.exists("where_classes.png"):
        figure(run, "where_classes.png", s)
    return s


REGION_NAMES = {"object": "on the object", "mark": "on the mark", "background": "on the background",
                "centre": "in the centre", "border": "in the border band"}


def where_table(w: dict) -> Table:
    """Per method: the share of positive mass in each region, with the regions' area share last."""
    regs = list(w["regions"])
    rows = [[method_name(m)] + [fmt(v.get(r), 2) for r in regs] for m, v in w["methods"].items()]
    rows.append(["(area share)"] + [fmt(w["area"].get(r), 2) for r in regs])
    return Table(["method"] + [REGION_NAMES.get(r, r) for r in regs], rows,
                 f"Share of positive attribution mass per region ({w['images']} selected images)")


def where_sentences(w: dict) -> list[str]:
    """Q1 in numbers: which region holds the mass against its area, per method and per class."""
    out = []
    area = w["area"]
    if w.get("masks", "none") == "none":
        band = 100 * float(w.get("border", 0.125))
        out.append(f"Without masks we measure where the maps put their positive mass: in the centre or in the border "
                   f"band (the pixels within {band:g}% of the side of an edge, {fmt(area.get('border'), 2)} of the area). "
                   "A model that looks at the food should put less than the band's area share there.")
        ratios = {m: v["border"] / area["border"] for m, v in w["methods"].items()
                  if isinstance(v.get("border"), (int, float)) and area.get("border")}
        if ratios:
            out.append("Mass in the border band against its area: " + ", ".join(
                f"{method_name(m)} {fmt(w['methods'][m]['border'], 2)} ({fmt(r, 2)}x)" for m, r in ratios.items()) + ".")
    else:
        out.append(f"With the demo's masks we measure the share of each map's positive mass on the object, "
                   + ("on the planted mark " if "mark" in w["regions"] else "")
                   + f"and on the background: the object covers {fmt(area.get('object'), 2)} of the image"
                   + (f" and the mark {fmt(area.get('mark'), 3)}" if "mark" in area else "") + ".")
        obj = {m: v["object"] / area["object"] for m, v in w["methods"].items()
               if isinstance(v.get("object"), (int, float)) and area.get("object")}
        if obj:
            best = max(obj, key=obj.get)
            out.append("Mass on the object against its area: " + ", ".join(
                f"{method_name(m)} {fmt(w['methods'][m]['object'], 2)} ({fmt(r, 1)}x)" for m, r in obj.items())
                + f"; {method_name(best)} concentrates most on the object.")
        if "mark" in w["regions"]:
            mk = [(m, v["mark"]) for m, v in w["methods"].items() if isinstance(v.get("mark"), (int, float))]
            if mk:
                out.append("Mass on the mark: " + ", ".join(f"{method_name(m)} {fmt(v, 3)}" for m, v in mk)
                           + f" (its area share {fmt(area.get('mark'), 3)}).")
    shares = w.get("class_shares") or {}
    if shares:
        where_from = (f"{sum(w.get('class_images', {}).values())} images of {w['class_split']}/"
                      if w.get("class_split") != "selected" else "the selected images")
        key = "border" if "border" in next(iter(shares.values())) else "object"
        vals = {c: v[key] for c, v in shares.items() if isinstance(v.get(key), (int, float))}
        if vals:
            lo, hi = min(vals, key=vals.get), max(vals, key=vals.get)
            what = "in the border band" if key == "border" else "on the object"
            out.append(f"Per class (Grad-CAM at {w.get('class_layer')}, {where_from}): the share {what} ranges from "
                       f"{fmt(vals[lo], 2)} ({lo}) to {fmt(vals[hi], 2)} ({hi}); the class mean maps are in "
                       "where_classes.png.")
    return out


def filter_sentences(res: dict) -> list[str]:
    """Per layer: the optimised images' activation against noise and against the real images."""
    out = []
    for layer, r in sorted((res.get("layers") or {}).items(), key=lambda kv: natural_key(kv[0])):
        if not isinstance(r, dict):
            continue
        plain, robust = _mean(r.get("plain_activation")), _mean(r.get("robust_activation"))
        noise, real = _mean(r.get("noise_activation")), _mean(r.get("image_mean_activation"))
        n = len(r.get("filters") or [])
        alias = f" ({r['alias']})" if r.get("alias") else ""
        if plain is None:
            continue
        text = f"Layer {layer}{alias}, {n} filters: the plain images reach a mean activation of {fmt(plain)}"
        if robust is not None:
            text += f" (robust: {fmt(robust)})"
        if noise is not None:
            text += f", against {fmt(noise)} for uniform noise"
        if real is not None:
            text += f" and {fmt(real)} averaged over the selected real images"
        out.append(text + ".")
    return out


def example_sentences(res: dict) -> list[str]:
    """Per layer: which images excite the filters most (dataset examples)."""
    out = []
    for layer, r in sorted((res.get("layers") or {}).items(), key=lambda kv: natural_key(kv[0])):
        ex = r.get("examples") if isinstance(r, dict) else None
        if not isinstance(ex, dict) or not ex:
            continue
        k = len(next(iter(ex.values())))
        bits = "; ".join(f"#{f}: {', '.join(e['file'] for e in rows)} (mean {fmt(rows[0]['activation'], 2)} at most)"
                         for f, rows in list(ex.items())[:4])
        out.append(f"Dataset examples at layer {layer}: the {k} images of {res.get('examples_split') or 'the evaluation'}/ "
                   f"({res.get('examples_images', '?')} scanned) with the highest mean activation of each filter, "
                   f"shown in filter_examples.png beside the optimised images. For instance {bits}.")
    return out


def filters_section(run: Run) -> Section:
    """Question 2: what do the filters respond to?"""
    s = Section("2. Filter visualization and activations: what do the filters respond to?", refs=["erhan", "olah"])
    s.paragraphs.append(
        "Each filter image starts from uniform noise and is optimised by gradient ascent to maximise one filter's "
        "mean activation (Erhan et al. 2009; robust parameterisation after Olah et al. 2017). The activation maps "
        "show where the same filters fire on the real images.")
    res = run.results.get("filters")
    if isinstance(res, dict):
        s.paragraphs.extend(filter_sentences(res))
    if isinstance(res, dict):
        s.paragraphs.extend(example_sentences(res))
    layers = (run.layers("filters") or "").split(", ")
    for base in ("filter_visualization.png", "filter_visualization_robust.png", "filter_activations.png",
                 "filter_examples.png"):
        names = layer_figures(run, base)
        # the unsuffixed figure shows the one recorded layer that has no suffixed file
        first = [l for l in layers if l and f"{base[:-4]}_{l}.png" not in names]
        for name in names:
            figure(run, name, s, layer=first[0] if name == base and len(layers) > 1 and len(first) == 1 else None)
    return s


def confusion_sentences(names: list[str], counts: np.ndarray, split: str | None) -> list[str]:
    """Accuracy, best/worst classes and the most frequent confusion, from the counts."""
    totals = counts.sum(1)
    n = int(totals.sum())
    if n == 0:
        return ["The confusion matrix holds no images."]
    acc = float(np.trace(counts)) / n
    where = f"On the {split} split" if split else "On the evaluation split"
    out = [f"{where} ({n} images) the model's accuracy is {fmt(acc)}."]
    have = totals > 0
    per = np.where(have, np.diag(counts) / np.maximum(totals, 1), np.nan)
    if have.any():
        best, worst = np.nanmax(per), np.nanmin(per)
        tops = [names[i] for i in range(len(names)) if have[i] and per[i] == best]
        lows = [names[i] for i in range(len(names)) if have[i] and per[i] == worst]
        if worst < best:
            out.append(f"It is most accurate on {join_names(tops)} ({fmt(best, 2)}) and least accurate on "
                       f"{join_names(lows)} ({fmt(worst, 2)}).")
        else:
            out.append(f"Its accuracy is the same on all {len(tops)} classes with images ({fmt(best, 2)}).")
    off = counts.copy()
    np.fill_diagonal(off, 0)
    if off.max() > 0:
        i, j = np.unravel_index(int(off.argmax()), off.shape)
        out.append(f"It most often confuses {names[i]} with {names[j]}: {int(off[i, j])} of the {int(totals[i])} "
                   f"{names[i]} images are predicted as {names[j]}.")
    else:
        out.append("No image of the split is misclassified.")
    return out


def why_sentences(names: list[str], counts: np.ndarray, where: Any, k: int = 3) -> list[str]:
    """Q3: the largest confusions, which of them go both ways, and what the maps show for them and for the mark."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    if off.max() <= 0:
        return []
    totals = np.maximum(counts.sum(1), 1)
    cells = sorted(((int(off[i, j]), i, j) for i in range(len(names)) for j in range(len(names)) if off[i, j] > 0),
                   key=lambda c: (-c[0], c[1], c[2]))[:k]
    out = ["The largest confusions in confusion_matrix.csv: " + "; ".join(
        f"{names[i]} predicted as {names[j]} {n} times ({fmt(100 * n / totals[i], 0)}% of {names[i]})"
        for n, i, j in cells) + "."]
    pairs = list(dict.fromkeys(tuple(sorted((i, j))) for _, i, j in cells if off[j, i] > 0))
    if pairs:
        out.append("Confused both ways, so the two classes share a cue the model relies on: " + "; ".join(
            f"{names[i]} and {names[j]} ({int(off[i, j])} and {int(off[j, i])} images)" for i, j in pairs) + ".")
    w = where if isinstance(where, dict) else {}
    shares = w.get("class_shares") or {}
    key = "object" if w.get("masks", "none") != "none" else "centre"
    area = (w.get("class_area") or {}).get(key)
    bits = []
    for _, i, j in cells:
        a, b = (shares.get(names[c], {}).get(key) for c in (i, j))
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            bits.append(f"{names[i]} {fmt(a, 2)} and {names[j]} {fmt(b, 2)}")
    if bits and area:
        where_txt = "on the object" if key == "object" else "in the centre"
        out.append(f"Grad-CAM's share of mass {where_txt} ({fmt(area, 2)} of the area) for the confused classes: "
                   + "; ".join(dict.fromkeys(bits)) + ". " + (
                       "Both classes of each pair are explained by the object itself, so what they share is on the "
                       "object (its shape, colour or texture), not in the background." if key == "object" else
                       "Where both classes of a pair keep their mass in the centre, the shared cue is on the food."))
    mark = w.get("class_mark") or {}
    ratio = {c: v["share"] / v["area"] for c, v in mark.items()
             if isinstance(v.get("share"), (int, float)) and v.get("area")}
    # the class the mark helps most (accuracy with it minus without), else the one whose maps hold most of it
    gain = {c: a["with"] - a["without"] for c, a in (w.get("mark_accuracy") or {}).items()
            if c in ratio and isinstance(a.get("with"), (int, float)) and isinstance(a.get("without"), (int, float))}
    if ratio:
        top = max(gain, key=gain.get) if gain else max(ratio, key=ratio.get)
        rest = [v["share"] for c, v in mark.items() if c != top and isinstance(v.get("share"), (int, float))]
        text = (f"The planted mark: the class it helps most is {top}. On marked images, Grad-CAM puts "
                f"{fmt(mark[top]['share'], 3)} of its mass on the mark "
                f"for {top} ({fmt(ratio[top], 1)}x the mark's area share of {fmt(mark[top]['area'], 3)})"
                + (f", against {fmt(float(np.mean(rest)), 3)} on average for the other classes" if rest else "") + ".")
        acc = (w.get("mark_accuracy") or {}).get(top) or {}
        if isinstance(acc.get("with"), (int, float)) and isinstance(acc.get("without"), (int, float)):
            text += (f" {top}'s accuracy is {fmt(acc['with'], 2)} on its {acc['n_with']} marked images and "
                     f"{fmt(acc['without'], 2)} on its {acc['n_without']} unmarked ones.")
        pred = (w.get("mark_predicted") or {}).get(top)
        if isinstance(pred, (int, float)):
            text += f" Of all marked images, {fmt(100 * pred, 0)}% are predicted as {top}: the model leans on the mark."
        out.append(text)
    lime = (w.get("methods") or {}).get("lime") or {}
    if isinstance(lime.get(key), (int, float)) and (w.get("area") or {}).get(key):
        out.append(f"LIME's positive weight on the selected images lies {fmt(lime[key], 2)} "
                   f"{'on the object' if key == 'object' else 'in the centre'} (area {fmt(w['area'][key], 2)})"
                   + (f" and {fmt(lime['mark'], 3)} on the mark" if isinstance(lime.get("mark"), (int, float)) else "")
                   + "; lime_classes.png shows each class's most confident right and wrong image.")
    return out


def confusion_table(names: list[str], counts: np.ndarray) -> Table:
    """Per class: images, accuracy, the class it is most often mistaken for."""
    rows = []
    for i, name in enumerate(names):
        total = int(counts[i].sum())
        off = counts[i].copy()
        off[i] = 0
        worst = f"{names[int(off.argmax())]} ({int(off.max())})" if off.max() > 0 else "-"
        rows.append([name, str(total), fmt(counts[i, i] / total, 2) if total else "-", worst])
    return Table(["class", "images", "accuracy", "most often predicted instead (count)"], rows,
                 "Per-class accuracy from confusion_matrix.csv")


def lime_sentences(res: dict) -> list[str]:
    """How well LIME's local linear model fits, and how many superpixels it used."""
    r2 = res["local_fit_r2"]   # R^2 of the explained class's local fit
    sp = res.get("superpixels") or {}
    vals = [v for v in r2.values() if isinstance(v, (int, float))]
    if not vals:
        return []
    text = (f"LIME's local linear model for the explained class fits the perturbed predictions with R^2 from "
            f"{fmt(min(vals), 2)} to "
            f"{fmt(max(vals), 2)} (mean {fmt(float(np.mean(vals)), 2)}) over the {len(vals)} selected images")
    counts = [v for v in sp.values() if isinstance(v, int)]
    if counts:
        text += f", using {min(counts)} to {max(counts)} superpixels per image"
    samples = res.get("samples")
    return [text + (f" and {samples} samples each." if samples else ".")]


def lime_classes_table(res: dict) -> Table | None:
    """Per class: accuracy, most confused class, and the two images LIME explained."""
    classes = res.get("classes")
    if not isinstance(classes, dict) or not classes:
        return None
    rows = [[name, fmt(c.get("accuracy"), 2) if isinstance(c.get("accuracy"), (int, float)) else "-",
             str(c.get("most_confused") or "-"), str(c.get("correct") or "-"), str(c.get("wrong") or "-")]
            for name, c in classes.items() if isinstance(c, dict)]
    return Table(["class", "accuracy", "most confused with", "correct example", "wrong example"], rows,
                 f"Images explained per class in lime_classes.png ({res.get('split', 'evaluation')} split)")


def lime_section(run: Run) -> Section:
    """Question 3: LIME per class with the confusion matrix."""
    s = Section("3. LIME per class and the confusion matrix: why do some labels do well?",
                refs=["ribeiro", "achanta"])
    s.paragraphs.append(
        "LIME (Ribeiro et al. 2016) switches SLIC superpixels (Achanta et al. 2012) on and off, fits a weighted "
        "linear model to the class probabilities of the perturbed images and reports each superpixel's weight for "
        "the explained class. The confusion matrix shows which labels the model gets right and which it mixes up.")
    cm = run.confusion()
    if cm:
        res = run.results.get("confusion") or {}
        s.paragraphs.extend(confusion_sentences(cm[0], cm[1], res.get("split")))
        s.paragraphs.extend(why_sentences(cm[0], cm[1], run.results.get("where")))
        s.tables.append(confusion_table(*cm))
    else:
        s.notes.append("confusion_matrix.csv is not in this output folder (task confusion not run or skipped): "
                       "no per-class accuracy.")
    if isinstance(run.results.get("lime"), dict):
        s.paragraphs.extend(lime_sentences(run.results["lime"]))
    table = lime_classes_table(run.results.get("lime_classes") or {})
    if table:
        s.tables.append(table)
    for name in ("confusion_matrix.png", "lime.png", "lime_details.png", "lime_classes.png"):
        figure(run, name, s)
    return s


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


def sanity_verdicts(obj: Any) -> dict[str, str]:
    """method -> the trust task's own sanity verdict ('passes', 'fails sanity check', ...), when it wrote one."""
    methods = obj.get("methods") if isinstance(obj, dict) else None
    if not isinstance(methods, dict):
        return {}
    return {m: r["sanity_check"] for m, r in methods.items() if isinstance(r, dict) and
            isinstance(r.get("sanity_check"), str)}


def trust_sentences(table: dict, verdicts: dict[str, str] | None = None, threshold: float = 0.5) -> list[str]:
    """Each method's deletion/insertion AUC against the random map, sanity and ground-truth scores."""
    out = []
    rnd = table.get("random")
    methods = [m for m in table if m != "random"]
    for m in methods:
        bits = []
        for metric, better in (("deletion_auc", "lower"), ("insertion_auc", "higher")):
            if metric in table[m]:
                text = f"{METRIC_NAMES[metric]} {fmt(table[m][metric][0])}"
                if rnd and metric in rnd:
                    text += f" vs {fmt(rnd[metric][0])} for a random map"
                bits.append(text)
        if bits:
            out.append(f"{method_name(m)}: {'; '.join(bits)}.")
    if rnd and methods:
        both = [m for m in methods if {"deletion_auc", "insertion_auc"} <= set(table[m])
                and {"deletion_auc", "insertion_auc"} <= set(rnd)]
        beat = [method_name(m) for m in both if table[m]["deletion_auc"][0] < rnd["deletion_auc"][0]
                and table[m]["insertion_auc"][0] > rnd["insertion_auc"][0]]
        if both:
            out.append(f"{len(beat)} of {len(both)} methods beat the random map on both deletion (lower is better) "
                       f"and insertion (higher is better)" + (f": {join_names(beat, 8)}." if beat else "."))
    sanity = [m for m in methods if "sanity_spearman" in table[m]]
    if sanity:
        verdicts = verdicts or {}
        fails = [method_name(m) for m in sanity if (verdicts[m].startswith("fail") if m in verdicts else
                                                    table[m]["sanity_spearman"][0] >= threshold)]
        out.append("After full randomization of the weights, the Spearman correlation with the original map is " +
                   ", ".join(f"{fmt(table[m]['sanity_spearman'][0], 2)} for {method_name(m)}" for m in sanity) + "; " + (
            f"{join_names(fails, 8)} fail{'s' * (len(fails) == 1)} the sanity check (>= {threshold:g})." if fails
            else f"every tested method passes the sanity check (< {threshold:g})."))
    pg = [m for m in table if "pointing_game" in table[m]]
    if pg:
        out.append("Ground truth (masks): pointing game " + ", ".join(
            f"{method_name(m)} {fmt(table[m]['pointing_game'][0], 2)}" for m in pg) + ".")
    return out


def trust_section(run: Run) -> Section:
    """The trust table: faithfulness, sanity check, ground truth."""
    s = Section("5. How far to trust these maps", refs=["petsiuk", "adebayo", "zhang"])
    s.paragraphs.append(
        "Deletion removes the most important pixels first and insertion adds them first (Petsiuk et al. 2018): a "
        "faithful map makes the class probability fall fast (low deletion AUC) and rise fast (high insertion AUC), "
        "compared with a random map. The sanity check (Adebayo et al. 2018) re-initialises the weights: a map that "
        "barely changes does not depend on what the model learned. Where ground-truth masks exist (the demo), "
        "the pointing game (Zhang et al. 2016) asks whether a map's maximum falls on the object.")
    obj = run.json_file("trust.json")
    table = trust_table(obj) if obj else {}
    if table:
        sanity = obj.get("sanity") if isinstance(obj.get("sanity"), dict) else {}
        threshold = sanity.get("threshold") if isinstance(sanity.get("threshold"), (int, float)) else 0.5
        counts = []
        for metric, what in (("deletion_auc", "deletion and insertion"), ("pointing_game", "ground truth"),
                             ("sanity_spearman", "the sanity check")):
            ns = sorted({st[metric][2] for st in table.values() if metric in st and st[metric][2]})
            if ns:
                counts.append(f"{'/'.join(map(str, ns))} image{'s' * (ns != [1])} for {what}")
        if counts:
            s.paragraphs.append(f"Scores are means over {', '.join(counts)}"
                                + (f" ({obj['mode']} mode)." if isinstance(obj.get("mode"), str) else "."))
        s.paragraphs.extend(trust_sentences(table, sanity_verdicts(obj), threshold))
        metrics = [m for m in METRIC_NAMES if any(m in v for v in table.values())]
        verdicts = sanity_verdicts(obj)
        rows = []
        for method, stats in table.items():
            row = [method_name(method)]
            for m in metrics:
                st = stats.get(m)
                row.append("-" if st is None else fmt(st[0]) + (f" ± {fmt(st[1])}" if st[1] is not None else ""))
            verdict = verdicts.get(method, "-")
            verdict = "fails" if verdict.startswith("fail") else "n/a" if verdict.startswith("not") else verdict
            rows.append(row + ([verdict] if verdicts else []))
        s.tables.append(Table(["method"] + [METRIC_NAMES[m] for m in metrics] + (["sanity"] if verdicts else []),
                              rows, "trust.json: mean ± std over images"))
        skipped = obj.get("skipped") if isinstance(obj.get("skipped"), dict) else {}
        s.notes.extend(f"{method_name(m)} not scored: {why}" for m, why in skipped.items())
    elif obj is None:
        state = run.ran("trust")
        s.notes.append("trust.json is not in this output folder (" + (
            f"task trust {state}" if state and state != "ran" else "task trust not run") + "): no trust table.")
    else:
        s.notes.append("trust.json holds no method x metric table this report can read.")
    for name in ("trust_curves.png", "sanity_check.png"):
        figure(run, name, s)
    return s


# ---------------------------------------------------------------- audit section

def audit_section(run: Run) -> Section | None:
    """The whole-split audit (audit.csv, audit.png), only when this run wrote audit.csv; else None."""
    if not (run.exists("audit.csv") and run.fresh("audit.csv")):
        return None
    with open(run.out / "audit.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    res = run.results.get("audit") if isinstance(run.results.get("audit"), dict) else {}
    names = run.class_names
    s = Section("6. Audit of a whole split: right for the wrong reason?", refs=["selvaraju", "petsiuk"])
    split, n = res.get("split", "the audited"), len(rows)
    grid, steps, border = res.get("grid", "?"), res.get("steps", "?"), res.get("border")
    s.paragraphs.append(
        f"The audit explains every image of the {split} split ({n} images) with a {grid}x{grid} Grad-CAM map of the "
        f"predicted class (layer {res.get('layer', '?')}), a deletion AUC over the map's cells in {steps} steps, and the "
        "share of the map's mass in the border band"
        + (f" (the outer {border:g} of the side on each edge)" if isinstance(border, (int, float)) else "")
        + (f"; engine {res['engine']}, {fmt(res['seconds'], 1)} s" if res.get("engine") and "seconds" in res else "")
        + ".")
    num = lambda r, k: float(r[k]) if r.get(k) not in (None, "") else math.nan  # noqa: E731
    labelled = [r for r in rows if r["correct"] != ""]
    if labelled:
        s.paragraphs.append(f"Accuracy on the split: {fmt(sum(r['correct'] == '1' for r in labelled) / len(labelled))}; "
                            f"mean border mass {fmt(_mean([num(r, 'border_mass') for r in rows]))}, mean deletion "
                            f"AUC {fmt(_mean([num(r, 'deletion_auc') for r in rows]))}.")
    s.paragraphs.append(
        "Suspicion = confidence x spot mass x (1 - typical mass): the spot mass is the largest share of the map in "
        f"one {res.get('spot', 3)}x{res.get('spot', 3)}-cell block, the typical mass its share on the region where "
        "the split's per-cell median map holds half of its mass (where the model usually looks). It reads maps and "
        "predictions "
        "only, never a mask.")
    top = sorted(rows, key=lambda r: int(r["suspicion_rank"]))[:int(res.get("top") or 16)]
    marked = [r for r in rows if r.get("has_mark") not in (None, "")]
    if marked and len(marked) == n:
        hits = sum(r["has_mark"] == "1" for r in top)
        share = sum(r["has_mark"] == "1" for r in rows) / n
        s.paragraphs.append(f"Graded with the demo's mark masks (never read by the score): {hits} of the {len(top)} "
                            f"most suspicious images carry the planted mark; {fmt(100 * share, 1)}% of the split does, "
                            f"so about {fmt(share * len(top), 1)} would by chance.")
    cls = lambda v: class_name(names, int(v)) if v not in ("", None) and int(v) >= 0 else "-"  # noqa: E731
    head = ["rank", "file", "true", "predicted", "confidence", "suspicion", "spot", "typical"]
    extra = ["mark mass", "mark"] if marked and len(marked) == n else []
    s.tables.append(Table(head + extra, [
        [r["suspicion_rank"], r["file"], cls(r["label"]), cls(r["pred"]), fmt(num(r, "confidence")),
         fmt(num(r, "suspicion")), fmt(num(r, "spot_mass")), fmt(num(r, "typical_mass"))]
        + ([fmt(num(r, "mark_mass")), "yes" if r["has_mark"] == "1" else "no"] if extra else []) for r in top],
        "audit.csv: the most suspicious predictions"))
    sizes = res.get("cluster_sizes") if isinstance(res.get("cluster_sizes"), list) else []
    per = []
    for c in range(len(names)):
        mine = [r for r in rows if r["pred"] == str(c)]
        if mine:
            per.append([class_name(names, c), str(len(mine)), "/".join(map(str, sizes[c])) if c < len(sizes) else "-",
                        fmt(_mean([num(r, "border_mass") for r in mine])),
                        fmt(_mean([num(r, "suspicion") for r in mine]))])
    if per:
        s.tables.append(Table(["predicted class", "images", "attention patterns (sizes)", "border mass",
                               "mean suspicion"], per, "Per predicted class"))
    if run.exists("audit.png"):
        s.figures.append(Figure("audit.png", "Audit: the most suspicious predictions and the class mean maps",
                                f"The {len(top)} most suspicious images of {split}/ with the Grad-CAM map of the "
                                "predicted class over each, then the mean normalised map of every predicted class."))
    else:
        s.notes.append("audit.png is not in this output folder.")
    return s




def appendix_section(run: Run, in_run: bool) -> Section:
    """Reproducibility: command, versions, seeds, checkpoint, data, settings, per-task timings."""
    s = Section("Appendix: reproducibility")
    r = run.record
    if not r:
        s.notes.append("No run record (run.json) in this output folder: command, versions and timings unknown.")
        return s
    rows = [["command", str(r.get("command", "-"))]]
    versions = r.get("versions") or {}
    rows.append(["versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"])
    rows.append(["seed", f"{r.get('seed', '-')} (every random step seeded from it, keyed by method and image)"])
    rows.append(["checkpoint", str(r.get("checkpoint") or "none")])
    rows.append(["checkpoint sha256", str(r.get("checkpoint_sha256") or "-")])
    rows.append(["arch", f"{r.get('arch', '-')}, input {r.get('input_size', '-')} px"])
    pre = r.get("preprocess") or {}
    if pre:
        rows.append(["preprocessing", f"bgr {pre.get('bgr')}, cv2 {pre.get('cv2')}, mean {pre.get('mean')}, "
                                      f"std {pre.get('std')}"])
    rows.append(["data", f"{r.get('data', '-')}" + (" (embedded demo)" if r.get("demo") else "")])
    rows.append(["device", f"{r.get('device', '-')}, torch threads {r.get('torch_threads', '-')}, forward-only "
                           f"passes in {r.get('precision', 'fp32')} (gradients fp32)"])
    s.tables.append(Table(["item", "value"], rows, "Run"))
    if run.settings:
        pairs = [[k, str(v)] for k, v in sorted(run.settings.items())]
        third = -(-len(pairs) // 3)
        rows = [sum((pairs[i + third * c] if i + third * c < len(pairs) else ["", ""] for c in range(3)), [])
                for i in range(third)]
        s.tables.append(Table(["setting", "value"] * 3, rows, "Settings used"))
    timings = r.get("timings") or {}
    if timings:
        tasks = r.get("tasks") or {}
        prec = {k: v.get("precision", "-") for k, v in run.results.items()}
        trows = [[k, f"{float(timings[k]):.1f}", prec.get(k, "-"), str(tasks.get(k, ""))] for k in run_order(timings)]
        if in_run and "report" not in timings:
            trows.append(["report", "-", "-", "this report (still running when the table was written)"])
        s.tables.append(Table(["task", "seconds", "precision", "files or note"], trows,
                              "Per-task wall time" + (f" (total{' so far' if in_run else ''} {float(r['total_seconds']):.1f} s)"
                                                      if r.get("total_seconds") is not None else "")))
    if r.get("budget"):      # the opt-in time-budget planner's changes
        rows = [[k, v] for k, v in flatten(r["budget"])][:24]
        if rows:
            s.tables.append(Table(["quantity", "value"], rows, "Time-budget planner: settings it changed"))
    other = [(k, v) for task, res in run.results.items() if task not in KNOWN_RESULTS
             for k, v in flatten({key: val for key, val in res.items() if key != "precision"}, f"{task}.")][:24]
    if other:
        s.tables.append(Table(["quantity", "value"], [list(kv) for kv in other], "Other numbers the tasks recorded"))
    return s


def run_order(names: Any) -> list[str]:
    """Task names in the order a run executes them (train, setup, then the registry), unknown ones last."""
    import tasks

    order = ["train", "setup"] + tasks.names()
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def safe(make: Callable[[Run], Section], run: Run, title: str) -> Section:
    """A section, or a one-line note when this folder holds something it cannot read (never a crash)."""
    try:
        return make(run)
    except Exception as exc:  # noqa: BLE001 - files written by other tasks must not break the report
        return Section(title, notes=[f"this section could not be built from the output folder: "
                                     f"{type(exc).__name__}: {exc}"])


def build_report(out: Path, record: dict, in_run: bool = False) -> Report:
    """All sections for one output folder and run record (in_run: built by the run's own report task)."""
    run = Run(Path(out), record or {})
    sections = [safe(saliency_section, run, "1. Saliency maps"), safe(filters_section, run, "2. Filters"),
                safe(lime_section, run, "3. LIME and the confusion matrix"),
                safe(further_section, run, "4. Further methods"), safe(trust_section, run, "5. Trust"),
                safe(lambda r: appendix_section(r, in_run), run, "Appendix: reproducibility")]
    audit = safe(lambda r: audit_section(r) or Section(""), run, "6. Audit")   # issue 19: only when the audit ran
    if audit.title:
        sections.insert(-1, audit)
    arch = record.get("arch") if record else None
    data = record.get("data") if record else None
    subtitle = ", ".join(x for x in (f"model {arch}" if arch else "", f"data {Path(data).name}" if data else "",
                                     f"seed {record.get('seed')}" if record and "seed" in record else "") if x)
    return Report("What has the CNN learned? Explanations of this run", subtitle or "output folder " + str(out),
                  sections)
