"""LIME (Ribeiro et al., 2016) with the lime package: SLIC superpixels, seeded sampling, batched softmax calls.

Compute (classifier_fn, explain_images, weight_maps) is kept apart from the two tasks and their figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from lime.lime_image import ImageExplanation, LimeImageExplainer
from lime.wrappers.scikit_image import SegmentationAlgorithm
from skimage.segmentation import find_boundaries, mark_boundaries
from torch import nn

import seeds
from errors import ExplainInputError
from attribution import Attribution
from model import device_of
from outputs import save_maps
from records import LimeClassesResult, LimeResult

COURSE_FEATURES = 11     # the course figure: get_image_and_mask(num_features=11, min_weight=0.05)
# The course's absolute 0.05 was meant for logits; our weights are probabilities, which barely move for a
# confident model (weights ~1e-5), so the threshold is 5% of the image's largest |weight| instead.
COURSE_MIN_WEIGHT = 0.05
TOP_K = 5                # superpixels shown in the detail figure's "top positive / negative" panels


def classifier(model: nn.Module, batch_size: int, channels_last: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """lime's classifier_fn: N x H x W x 3 images in [0,1] -> N x C softmax probabilities, in batches.

    The model comes wrapped for the run's precision (bf16 autocast or fp32). With channels_last, lime's NHWC
    batches go in as they are (channels_last memory, the run's model format: bench/lime_speed.py measured it
    1.5-2x faster than NCHW on our CPU for the HW3 models).
    """
    device = device_of(model)

    def classifier_fn(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                chunk = np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32)
                x = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2)  # NHWC memory = channels_last
                if not channels_last:
                    x = x.contiguous()
                out.append(torch.softmax(model(x).float(), 1).cpu())
        return torch.cat(out).numpy()

    return classifier_fn


class SeededExplainer(LimeImageExplainer):
    """lime's explainer with vectorised perturbations and our progress bar instead of lime's.

    data_labels draws exactly the random numbers lime's own does, so explanations equal stock lime's.
    feature_selection="none": every superpixel is kept anyway (lime's "auto" picks "highest_weights" with
    num_features=100000, i.e. all of them) and this skips that extra ridge fit per class.
    """

    def __init__(self, random_state: int, progress: Any = None):
        super().__init__(random_state=random_state, feature_selection="none")
        self.progress = progress

    def data_labels(self, image: np.ndarray, fudged_image: np.ndarray, segments: np.ndarray,
                    classifier_fn: Callable, num_samples: int, batch_size: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Random on/off superpixel rows (row 0 = all on) and the model's probabilities for each."""
        n_features = np.unique(segments).shape[0]
        if segments.min() != 0 or segments.max() != n_features - 1:
            raise ValueError(f"superpixel ids must be 0..{n_features - 1}, got {segments.min()}..{segments.max()}")
        data = self.random_state.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
        data[0, :] = 1
        labels = []
        for i in range(0, num_samples, batch_size):
            keep = data[i:i + batch_size].astype(bool)[:, segments]          # B x H x W
            labels.append(classifier_fn(np.where(keep[..., None], image, fudged_image)))
            if self.progress is not None:
                self.progress.update(len(keep))
        return data, np.concatenate(labels)


def segmenter(n_segments: int, compactness: float, sigma: float) -> SegmentationAlgorithm:
    """SLIC as lime wraps it; start_label=0 so lime can switch off every superpixel (skimage >= 0.19 starts at 1)."""
    return SegmentationAlgorithm("slic", n_segments=n_segments, compactness=compactness, sigma=sigma,
                                 start_label=0)


def explain_images(classifier_fn: Callable[[np.ndarray], np.ndarray], images: torch.Tensor, image_seeds: Sequence[int],
                   labels: Sequence[Sequence[int]], num_samples: int, batch_size: int,
                   segmentation: SegmentationAlgorithm, progress: Any = None) -> list[ImageExplanation]:
    """One lime explanation per image (N x 3 x H x W in [0,1]) for its labels (the last one's fit gives
    `exp.score`); image_seeds[i] drives image i."""
    out = []
    for img, seed, labs in zip(images, image_seeds, labels):
        hwc = np.ascontiguousarray(img.permute(1, 2, 0).numpy(), dtype=np.float32)
        explainer = SeededExplainer(random_state=int(seed), progress=progress)
        out.append(explainer.explain_instance(hwc, classifier_fn, labels=tuple(int(c) for c in labs),
                                              top_labels=None, hide_color=None, num_samples=num_samples,
                                              batch_size=batch_size, segmentation_fn=segmentation))
    return out


def lime_attribution(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int,
                     keys: Sequence[Any], samples: int, segments: int, compactness: float,
                     sigma: float, extra_labels: Any = None, progress: Any = None) -> Attribution:
    """LIME maps (each image's superpixel weights for its target, painted onto the pixels) with the segments,
    the explained class's local fit R^2 and lime's explanation objects; `extra_labels` (one class per image,
    e.g. the prediction) are fitted too, for drawing."""
    if samples < 2 or segments < 1:
        raise ExplainInputError(f"lime needs samples >= 2 and segments >= 1, got {samples} and {segments}")
    t = [int(c) for c in targets]
    extra = [None] * len(t) if extra_labels is None else [int(c) for c in np.asarray(extra_labels).reshape(-1)]
    labels = [([e] if e is not None and e != c else []) + [c] for c, e in zip(t, extra)]
    if progress is not None:
        progress.reset(total=len(t) * samples)
    exps = explain_images(classifier(model, batch_size), images, [image_seed(seed, k) for k in keys], labels,
                          samples, batch_size, segmenter(segments, compactness, sigma), progress)
    return Attribution("lime", weight_maps(exps, t), np.asarray(t, dtype=np.int64),
                       segments=np.stack([e.segments for e in exps]).astype(np.int32),
                       local_fit=np.array([float(e.score) for e in exps]), explanations=exps)


def superpixel_weights(exp: ImageExplanation, label: int) -> np.ndarray:
    """The weight of every superpixel (indexed by id) for one class."""
    w = np.zeros(int(exp.segments.max()) + 1)
    for f, v in exp.local_exp[int(label)]:
        w[f] = v
    return w


def weight_maps(exps: Sequence[ImageExplanation], labels: Sequence[int]) -> np.ndarray:
    """N x H x W: each image's superpixel weights for its class, painted onto the pixels."""
    return np.stack([superpixel_weights(e, c)[e.segments] for e, c in zip(exps, labels)]).astype(np.float32)


def image_seed(seed: int, key: Any) -> int:
    """lime's random_state for one image: from the run seed and the image's key (its file name in the pipeline),
    independent of the other images."""
    return seeds.seed_int(seed, "lime", key, bits=31)


# ---------------------------------------------------------------- drawing

def course_overlay(exp: ImageExplanation, label: int) -> np.ndarray:
    """The course figure's panel: green = for the class, red = against (11 strongest, |w| >= 5% of the largest)."""
    top = float(np.abs(superpixel_weights(exp, label)).max())
    temp, mask = exp.get_image_and_mask(int(label), positive_only=False, hide_rest=False,
                                        num_features=COURSE_FEATURES, min_weight=COURSE_MIN_WEIGHT * top)
    return mark_boundaries(np.clip(temp, 0, 1), mask, color=(1, 1, 0))


def top_superpixels(exp: ImageExplanation, label: int, sign: int, k: int = TOP_K) -> np.ndarray:
    """Ids of the k superpixels with the largest weights of one sign (fewer when fewer have that sign)."""
    w = superpixel_weights(exp, label) * sign
    order = np.argsort(-w, kind="stable")[:k]
    return order[w[order] > 0]


def highlight(image: np.ndarray, segments: np.ndarray, ids: np.ndarray, color: tuple[float, float, float]
              ) -> np.ndarray:
    """The chosen superpixels in full colour with coloured outlines, the rest dimmed to gray."""
    sel = np.isin(segments, ids)
    gray = image.mean(2, keepdims=True).repeat(3, 2) * 0.35 + 0.3
    out = np.where(sel[..., None], image, gray)
    return mark_boundaries(out, np.where(sel, segments + 1, 0), color=color)


def show_lime(ax, exp: ImageExplanation, label: int) -> None:
    """The course overlay of one class, or a note when every superpixel weight is 0 (there is nothing to show)."""
    if not np.any(superpixel_weights(exp, label)):
        ax.imshow(np.full(exp.segments.shape + (3,), 0.92, np.float32))
        ax.text(0.5, 0.5, "every LIME\nweight is 0", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        return
    ax.imshow(course_overlay(exp, label))


def _cls(names: Sequence[str], c: int) -> str:
    return names[c] if 0 <= c < len(names) else str(c)


def draw_course(images: torch.Tensor, exps: Sequence[ImageExplanation], captions: Sequence[str],
                targets: np.ndarray, preds: np.ndarray, names: Sequence[str], title: str, path: Path) -> Path:
    """lime.png: original | LIME of the explained class | LIME of the predicted class (when it differs)."""
    import draw

    extra = bool((preds != targets).any())
    n, k = len(exps), 3 if extra else 2
    rows, per = draw.item_rows(n, k, max_cols=4)
    fig, axes = draw.figure(rows, k * per, cell=(1.75, 2.0), title=title, snug=True)
    for i, (e, ax) in enumerate(zip(exps, draw.item_panels(axes, n, k, per))):
        draw.show_image(ax[0], images[i], captions[i])
        show_lime(ax[1], e, targets[i])
        ax[1].set_title(f"LIME for {_cls(names, targets[i])}\n(explained class)")
        if extra:
            if preds[i] != targets[i]:
                show_lime(ax[2], e, preds[i])
                ax[2].set_title(f"LIME for {_cls(names, preds[i])}\n(predicted class)")
            else:
                ax[2].axis("off")
                ax[2].text(0.5, 0.5, "prediction =\nexplained class", ha="center", va="center")
    fig.supxlabel(f"green = superpixel supports the class, red = against\nthe {COURSE_FEATURES} strongest with "
                  f"|weight| >= {COURSE_MIN_WEIGHT:.0%} of the largest", fontsize=7)
    for a in axes.flat:
        a.title.set_fontsize(7)
    return draw.save(fig, path)


def draw_details(images: torch.Tensor, exps: Sequence[ImageExplanation], captions: Sequence[str],
                 targets: np.ndarray, preds: np.ndarray, names: Sequence[str], title: str, path: Path) -> Path:
    """lime_details.png: original, SLIC boundaries, top +/- superpixels (explained and predicted class), weights."""
    import draw

    extra = bool((preds != targets).any())
    ncols = 7 if extra else 5
    n = len(exps)
    fig, axes = draw.figure(n, ncols, cell=(2.3, 2.9), title=title, extra_width=0.6)
    for i, e in enumerate(exps):
        img = draw.as_hwc(images[i])
        draw.show_image(axes[i, 0], img, captions[i])
        axes[i, 1].imshow(mark_boundaries(img, e.segments, color=(1, 1, 0)))
        axes[i, 1].set_title(f"SLIC: {int(e.segments.max()) + 1} superpixels")
        cols = [(targets[i], "explained")] + ([(preds[i], "predicted")] if extra else [])
        for j, (c, role) in enumerate(cols):
            ax_pos, ax_neg = axes[i, 2 + 2 * j], axes[i, 3 + 2 * j]
            if role == "predicted" and c == targets[i]:
                for ax in (ax_pos, ax_neg):
                    ax.axis("off")
                ax_pos.text(0.5, 0.5, "prediction =\nexplained class", ha="center", va="center")
                continue
            for ax, sign, color, word in ((ax_pos, 1, (0, 1, 0), "for"), (ax_neg, -1, (1, 0, 0), "against")):
                ids = top_superpixels(e, c, sign)
                if np.any(superpixel_weights(e, c)):
                    ax.imshow(highlight(img, e.segments, ids, color))
                    ax.set_title(f"{_cls(names, c)}\n({role}): top {len(ids)} {word}")
                else:
                    show_lime(ax, e, c)
                    ax.set_title(f"{_cls(names, c)} ({role})")
        w = superpixel_weights(e, targets[i])
        ax = axes[i, ncols - 1]
        im = draw.show_map(ax, w[e.segments], signed=True, title=f"weights for\n{_cls(names, targets[i])}")
        edge = find_boundaries(e.segments)
        ax.imshow(np.dstack([np.zeros(edge.shape + (3,)), edge * 0.35]).astype(np.float32))
        draw.colorbar(fig, im, ax, "LIME weight (probability)")
    for a in axes.flat:
        a.title.set_fontsize(7)
    draw.layout(fig, top=0.3)
    return draw.save(fig, path)


# ---------------------------------------------------------------- tasks

def task_lime(ctx) -> LimeResult:
    """LIME of the selected images: lime.png (course figure), lime_details.png, arrays/lime.npz."""
    import draw

    att = ctx.attribute("lime")
    exps, targets, preds, probs = att.explanations, att.targets, ctx.preds(), ctx.probs()
    samples = att.options["samples"]
    files = [save_maps(ctx.out, "lime", att.maps, ctx.files, targets, preds, segments=att.segments)]
    caps = [draw.caption(f, ctx.class_names, t, p, pr[p], lb)
            for f, t, p, pr, lb in zip(ctx.files, targets, preds, probs, ctx.labels)]
    how = f"{samples} samples, SLIC {att.options['segments']} segments, {ctx.precision}"
    files.append(draw_course(ctx.images, exps, caps, targets, preds, ctx.class_names,
                             f"LIME: superpixels for and against\n({how})", ctx.out / "lime.png"))
    files.append(draw_details(ctx.images, exps, caps, targets, preds, ctx.class_names,
                              f"LIME details: superpixels, strongest evidence and weights ({how})",
                              ctx.out / "lime_details.png"))
    return LimeResult(files=files, samples=int(samples), precision=ctx.precision,
                      superpixels={f: int(e.segments.max()) + 1 for f, e in zip(ctx.files, exps)},
                      local_fit_r2={f: float(r) for f, r in zip(ctx.files, att.local_fit)})


def pick_examples(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> list[tuple[int, int]]:
    """Per class: (index of its most confident correct image, of its most confident wrong image); -1 when none."""
    preds = probs.argmax(1)
    conf = probs.max(1)
    out = []
    for c in range(num_classes):
        picks = []
        for ok in (True, False):
            idx = np.flatnonzero((labels == c) & ((preds == c) == ok))
            picks.append(int(idx[np.argmax(conf[idx])]) if len(idx) else -1)  # argmax: first of ties
        out.append((picks[0], picks[1]))
    return out


def draw_classes(rows: list[dict], names: Sequence[str], title: str, path: Path,
                 top: Sequence[tuple[int, int, int]] = ()) -> Path:
    """lime_classes.png: per class, its most confident correct and wrong image with their LIME overlays (and, for
    many classes, a table of the top confusions (true, predicted, images) below)."""
    import draw

    any_wrong = any(row["wrong"] is not None for row in rows)
    if not any_wrong:
        title += "\n(no class has a misclassified image)"
    width = 5 if any_wrong else 2
    per = 2 if len(rows) > 1 else 1          # two classes side by side, so the grid fits an A4 page
    grid = -(-len(rows) // per)
    fig, grid_axes = draw.figure(grid, per * width + per - 1, cell=(0.68, 0.98), title=title, extra_width=0.8)
    for a in grid_axes[:, width::width + 1].flat:    # a spacer column before each further block, for its labels
        a.axis("off")
    axes = np.delete(grid_axes, np.s_[width::width + 1], axis=1)
    heads = ["correct", "LIME\n(true)", "wrong", "LIME\n(predicted)", "LIME\n(true)"][:width]
    for k in range(grid * per):
        block = axes[k // per, (k % per) * width:(k % per + 1) * width]
        for a, head in zip(block, heads):
            if k < per:
                a.set_title(head, fontsize=7)
            if k >= len(rows):
                a.axis("off")
    for r, row in enumerate(rows):
        ax = axes[r // per, (r % per) * width:(r % per + 1) * width]
        acc = "-" if np.isnan(row["accuracy"]) else f"{row['accuracy']:.2f}"
        conf = _cls(names, row["confused"]) if row["confused"] >= 0 else "none"
        ax[0].set_ylabel(f"{names[row['cls']]}\nacc. {acc}\nvs {conf}", fontsize=6.5)
        for key, panels in (("correct", ax[0:2]), ("wrong", ax[2:5])):
            ex = row[key]
            if not len(panels):
                continue
            if ex is None:
                for a in panels:
                    a.set_frame_on(False)
                panels[0].text(0.5, 0.5, f"no {key}\nimage", ha="center", va="center", fontsize=6.5,
                               transform=panels[0].transAxes)
                continue
            draw.show_image(panels[0], ex["image"])
            file = ex["caption"].split("\n")[0]
            panels[0].set_xlabel(file if key == "correct" else f"{file}\ncalled {_cls(names, ex['pred'])}",
                                 fontsize=6, labelpad=1)
            for a, c in zip(panels[1:], [ex["pred"], ex["true"]]):   # a correct image has only the first
                show_lime(a, ex["exp"], c)
    fig.text(0.5, 0.003, f"green = superpixel supports the class, red = against (the {COURSE_FEATURES} strongest "
             f"with |weight| >= {COURSE_MIN_WEIGHT:.0%} of the largest)", ha="center", va="bottom", fontsize=7)
    table = 0.0
    if top:
        lines = ["top confusions (true -> predicted: images): "
                 + "; ".join(f"{_cls(names, t)} -> {_cls(names, p)}: {c}" for t, p, c in top[k:k + 3])
                 for k in range(0, len(top), 3)]
        table = 0.16 * len(lines) + 0.1
        fig.text(0.01, 0.15 / fig.get_figheight(), "\n".join(lines), ha="left", va="bottom", fontsize=7,
                 family="monospace")
    h = fig.get_figheight()
    fig.subplots_adjust(left=0.8 / fig.get_figwidth(), right=0.995, top=1 - 0.85 / h, bottom=(0.45 + table) / h,
                        wspace=0.08, hspace=0.55)
    return draw.save(fig, path)


def task_lime_classes(ctx) -> LimeClassesResult:
    """Per class: LIME of the most confident correct and wrong eval-split image, with accuracy and confusion."""
    import confusion
    import dataset
    import draw

    split = ctx.opts.eval_split
    pred = ctx.eval_predictions()
    labels, probs, imageset = pred["labels"], pred["probs"], pred["images"]
    counts = confusion.confusion_counts(labels, probs.argmax(1), ctx.num_classes)
    acc, confused = confusion.per_class_accuracy(counts), confusion.most_confused(counts)
    many = ctx.num_classes > confusion.MAX_GRID   # rows for the most-missed classes, and a top-confusions table
    classes = confusion.most_missed(counts, confusion.LIME_CLASS_ROWS) if many else list(range(ctx.num_classes))
    picks = [pick_examples(labels, probs, ctx.num_classes)[c] for c in classes]
    chosen = sorted({i for pair in picks for i in pair if i >= 0})
    n = ctx.settings["lime_class_samples"]
    images, _ = dataset.load_batch(imageset, chosen, ctx.input_size, ctx.cv2_mode, ctx.resize)
    att = ctx.attribute("lime", images, labels[chosen], [f"{split}/{imageset.files[i]}" for i in chosen],
                        progress="lime_classes", samples=n, extra_labels=probs[chosen].argmax(1))
    exps = dict(zip(chosen, att.explanations))
    rows = []
    for c, pair in zip(classes, picks):
        row = {"cls": c, "accuracy": float(acc[c]), "confused": int(confused[c])}
        for key, i in zip(("correct", "wrong"), pair):
            if i < 0:
                row[key] = None
                continue
            p = int(probs[i].argmax())
            row[key] = {"image": images[chosen.index(i)], "exp": exps[i], "pred": p, "true": int(labels[i]),
                        "file": imageset.files[i],
                        "caption": draw.caption(imageset.files[i], ctx.class_names, None, p, float(probs[i, p]),
                                                int(labels[i]))}
        rows.append(row)
    title = f"LIME per class on {split}:\nits most confident correct and wrong image ({n} samples each)"
    top = confusion.top_confusions(counts, 9) if many else []
    if many:
        title += f"\nthe {len(classes)} of {ctx.num_classes} classes with the most misclassified images"
    files = [draw_classes(rows, ctx.class_names, title, ctx.out / "lime_classes.png", top)]
    return LimeClassesResult(
        files=files, split=split, samples=int(n), precision=ctx.precision,
        classes={ctx.class_names[r["cls"]]: {
            "accuracy": None if np.isnan(r["accuracy"]) else r["accuracy"],
            "most_confused": _cls(ctx.class_names, r["confused"]) if r["confused"] >= 0 else None,
            "correct": r["correct"]["file"] if r["correct"] else None,
            "wrong": r["wrong"]["file"] if r["wrong"] else None} for r in rows})
