"""Where the model looks (the course's Q1), measured from this run's maps.

With masks (the demo): each method's share of positive attribution mass on the object (`masks/<split>/`), on the
planted mark (`masks_mark/<split>/`) and on the background, on the selected images. Without masks (a real
Food-11 run): the share in the centre against the border band (the pixels within 1/8 of the side of an edge,
44% of the area). Per class: the mean Grad-CAM map (each map divided by its mass) of the first WHERE_PER_CLASS
evaluation-split images of the class in listing order (plus up to WHERE_MARKED marked ones where mark masks exist),
explaining the true class; without a labelled evaluation split, the selected images grouped by explained class.
Signed maps (IG, LIME, SHAP) count their positive part: the evidence for the class.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import dataset
from errors import Skipped
from records import WhereResult

BORDER = 1 / 8           # the border band: pixels within this share of the side of an edge
WHERE_PER_CLASS = 8      # evaluation images per class for the class mean Grad-CAM maps (deterministic subset)
WHERE_MARKED = 4         # at least this many marked images per class where mark masks exist


def border_mask(size: int, border: float = BORDER) -> np.ndarray:
    """H x W bool: the pixels within round(border x size) (at least 1) of an edge."""
    w = max(1, int(round(border * size)))
    i = np.arange(size)
    d = np.minimum(i, size - 1 - i)
    return np.minimum(d[:, None], d[None, :]) < w


def regions(size: int, n: int, obj: np.ndarray | None, mark: np.ndarray | None) -> dict[str, np.ndarray]:
    """Disjoint N x H x W bool regions: object / mark / background with masks, else centre / border."""
    if obj is None:
        band = np.broadcast_to(border_mask(size), (n, size, size))
        return {"centre": ~band, "border": band.copy()}
    mark = np.zeros_like(obj, dtype=bool) if mark is None else mark.astype(bool)
    out = {"object": obj.astype(bool) & ~mark}
    if mark.any():
        out["mark"] = mark
    out["background"] = ~(obj.astype(bool) | mark)
    return out


def positive(maps: np.ndarray) -> np.ndarray:
    """The positive part of maps as float64 (unsigned maps unchanged)."""
    return np.clip(np.asarray(maps, dtype=np.float64), 0.0, None)


def shares(maps: np.ndarray, regs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per region, each image's share of positive map mass (NaN for a map without positive mass)."""
    m = positive(maps)
    total = m.sum((1, 2))
    safe = np.where(total > 0, total, np.nan)
    return {name: (m * r).sum((1, 2)) / safe for name, r in regs.items()}


def area(regs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per region, each image's area share."""
    return {name: r.reshape(len(r), -1).mean(1) for name, r in regs.items()}


def class_mean_maps(maps: np.ndarray, classes: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class the mean of the images' mass-normalised positive maps (C x H x W, zeros without images), counts."""
    m = positive(maps)
    m = m / np.maximum(m.sum((1, 2), keepdims=True), 1e-30)
    out = np.zeros((num_classes, *m.shape[1:]))
    counts = np.bincount(classes, minlength=num_classes)[:num_classes]
    for c in range(num_classes):
        if counts[c]:
            out[c] = m[classes == c].mean(0)
    return out, counts


def _nanmean(x: np.ndarray) -> float | None:
    """Mean of the finite values, None when there is none."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def mark_masks(data: Path, images: dataset.ImageSet, indices: list[int], size: int,
               resize: dataset.Resize) -> np.ndarray | None:
    """N x S x S bool mark masks from masks_mark/<split>/ (an image without a file: empty), None without the folder."""
    if dataset.mark_dir(data, images.name) is None:
        return None
    out = np.zeros((len(indices), size, size), dtype=bool)
    for k, i in enumerate(indices):
        p = dataset.mark_path(data, images.name, images.files[i])
        if p.is_file():
            out[k] = dataset.load_mask(p, size, resize)
    return out


def marked_files(data: Path, split: str, files: list[str]) -> np.ndarray | None:
    """Bool per file: a non-empty mark mask exists (None without masks_mark/<split>/)."""
    if dataset.mark_dir(data, split) is None:
        return None
    out = np.zeros(len(files), dtype=bool)
    for k, f in enumerate(files):
        p = dataset.mark_path(data, split, f)
        if p.is_file():
            out[k] = bool(dataset.load_mask(p, 32).any())
    return out


def class_subset(labels: np.ndarray, num_classes: int, marked: np.ndarray | None) -> list[int]:
    """Indices: the first WHERE_PER_CLASS of each class, plus marked ones up to WHERE_MARKED marked per class."""
    pick: list[int] = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        mine = list(idx[:WHERE_PER_CLASS])
        if marked is not None:
            extra = [i for i in idx if marked[i] and i not in mine]
            mine += extra[:max(0, WHERE_MARKED - int(marked[mine].sum()))]
        pick += [int(i) for i in mine]
    return sorted(pick)


def stamp_class(data: Path, names: list[str]) -> int | None:
    """The class the data's planted stamp stands for (the demo's classes.json), None without one."""
    import json

    from demo import LOOKS_FILE

    try:
        name = json.loads((Path(data) / LOOKS_FILE).read_text(encoding="utf-8"))["stamp"]["class"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return names.index(name) if name in names else None


def shortcut_pair(labels: np.ndarray, probs: np.ndarray, marked: np.ndarray, cls: int) -> list[int]:
    """The most confident stamped image of `cls` called `cls`, then the most confident stamped image of another
    class called `cls` (each only when one exists; ties by listing order)."""
    pred, conf = probs.argmax(1), probs.max(1)
    out = []
    for want in (marked & (labels == cls) & (pred == cls), marked & (labels != cls) & (pred == cls)):
        idx = np.flatnonzero(want)
        if len(idx):
            out.append(int(idx[np.lexsort((idx, -conf[idx]))[0]]))
    return out


def shortcut_figure(ctx, split: dataset.ImageSet, labels: np.ndarray, probs: np.ndarray, marked: np.ndarray,
                    cls: int) -> tuple[list[Path], dict | None]:
    """shortcut.png: stamped images called the stamp's class, each in colour beside its Grad-CAM and LIME maps of
    that class, with the maps' shares on the stamp."""
    import draw

    idx = shortcut_pair(labels, probs, marked, cls)
    if not idx:
        return [], None
    size = ctx.input_size
    x, obj = dataset.load_batch(split, idx, size, ctx.cv2_mode, ctx.resize)
    mark = mark_masks(ctx.data, split, idx, size, ctx.resize)
    files = [split.files[i] for i in idx]
    keys = [f"shortcut:{split.name}/{f}" for f in files]
    maps = {m: ctx.attribute(m, x, [cls] * len(idx), keys).maps for m in ("gradcam", "lime")}
    regs = regions(size, len(idx), obj, mark)
    share = {m: shares(v, regs) for m, v in maps.items()}
    names = ctx.class_names
    fig, axes = draw.figure(len(idx), 3, cell=(2.2, 1.85),
                            title=f"The stamp at work: stamped images called {names[cls]}, with the maps of "
                                  f"{names[cls]}")
    for r, i in enumerate(idx):
        img = x[r]
        draw.show_image(axes[r, 0], img, title=f"{split.name}/{files[r]}\ntrue {names[int(labels[i])]}, "
                                                 f"called {names[cls]}, p {probs[i, cls]:.2f}")
        axes[r, 0].title.set_fontsize(7)
        ys, xs = np.nonzero(mark[r]) if mark is not None else ((), ())
        if len(ys):   # the stamp's box, from the demo's mark mask
            import matplotlib.patches as patches

            axes[r, 0].add_patch(patches.Rectangle((xs.min() - 1.5, ys.min() - 1.5), xs.max() - xs.min() + 3,
                                                   ys.max() - ys.min() + 3, fill=False, ec="white", lw=1.2))
        for c, (m, label, signed) in enumerate((("gradcam", "Grad-CAM", False), ("lime", "LIME", True)), start=1):
            im = draw.show_overlay(axes[r, c], img, draw.normalize(maps[m][r], signed), signed=signed,
                                   vrange=(-1.0, 1.0) if signed else (0.0, 1.0),
                                   title=f"{label}: {100 * share[m]['mark'][r]:.0f}% of its positive\nmass on the "
                                         f"stamp ({100 * regs['mark'][r].mean():.1f}% of the area)")
            axes[r, c].title.set_fontsize(7)
            draw.colorbar(fig, im, axes[r, c], "weight / its largest" if signed else "map / its largest")
    draw.layout(fig, top=0.35)
    rec = {"split": split.name, "files": files, "labels": [names[int(labels[i])] for i in idx],
           "probs": [float(probs[i, cls]) for i in idx], "class": names[cls],
           "mark_share": {m: [float(v) if np.isfinite(v) else None for v in share[m]["mark"]] for m in maps},
           "mark_area": [float(a) for a in regs["mark"].reshape(len(idx), -1).mean(1)],
           "lime_samples": int(ctx.settings["lime_samples"])}
    return [draw.save(fig, ctx.out / "shortcut.png")], rec


def task_where(ctx) -> WhereResult:
    """Q1 in numbers: per method the mass on object / mark / background (or centre / border), per class the mean
    Grad-CAM map (where_classes.png)."""
    import draw

    size = ctx.input_size
    mark = mark_masks(ctx.data, ctx.imageset, ctx.indices, size, ctx.resize) if ctx.masks is not None else None
    regs = regions(size, len(ctx.indices), ctx.masks, mark)
    methods: dict[str, dict[str, float | None]] = {}
    for m in ctx.method_names():
        try:
            att = ctx.attribute(m)
        except Skipped:
            continue
        methods[m] = {r: _nanmean(v) for r, v in shares(att.maps, regs).items()}
    areas = {r: float(v.mean()) for r, v in area(regs).items()}

    # per class: Grad-CAM of the true class on a deterministic subset of the evaluation split
    layer = ctx.gradcam_layer()
    mark_acc: dict[str, dict[str, float | int | None]] | None = None
    mark_pred: dict[str, float] | None = None
    short_files: list[Path] = []
    shortcut = None
    try:
        pred = ctx.eval_predictions()
        split = pred["images"]
        marked = marked_files(ctx.data, split.name, split.files)
        idx = class_subset(pred["labels"], ctx.num_classes, marked)
        x, obj = dataset.load_batch(split, idx, size, ctx.cv2_mode, ctx.resize)
        classes = pred["labels"][idx]
        where_from = split.name
        cmark = mark_masks(ctx.data, split, idx, size, ctx.resize) if obj is not None else None
        if marked is not None and marked.any():
            p = pred["probs"].argmax(1)
            ok = p == pred["labels"]
            mark_acc = {}
            for c, name in enumerate(ctx.class_names):
                mine = pred["labels"] == c
                w, wo = mine & marked, mine & ~marked
                mark_acc[name] = {"with": float(ok[w].mean()) if w.any() else None, "n_with": int(w.sum()),
                                  "without": float(ok[wo].mean()) if wo.any() else None, "n_without": int(wo.sum())}
            mark_pred = {name: float((p[marked] == c).mean()) for c, name in enumerate(ctx.class_names)}
            cls = stamp_class(ctx.data, ctx.class_names)
            if cls is not None:
                short_files, shortcut = shortcut_figure(ctx, split, pred["labels"], pred["probs"], marked, cls)
    except Skipped:
        x, obj, cmark = ctx.images, ctx.masks, mark
        classes = ctx.targets()
        where_from, idx = "selected", list(range(len(ctx.indices)))
    att = ctx.attribute("gradcam", x, classes)
    means, counts = class_mean_maps(att.maps, np.asarray(classes), ctx.num_classes)
    cregs = regions(size, len(idx), obj, cmark)
    cshare = shares(att.maps, cregs)
    carea = area(cregs)
    class_shares, class_mark = {}, {}
    for c, name in enumerate(ctx.class_names):
        sel = np.asarray(classes) == c
        if not sel.any():
            continue
        class_shares[name] = {r: _nanmean(v[sel]) for r, v in cshare.items()}
        if "mark" in cregs:
            has = sel & cregs["mark"].reshape(len(idx), -1).any(1)
            class_mark[name] = {"images": int(has.sum()), "share": _nanmean(cshare["mark"][has]) if has.any() else None,
                                "area": _nanmean(carea["mark"][has]) if has.any() else None}

    shown = [c for c in range(ctx.num_classes) if counts[c]]
    cols = min(6, max(1, len(shown)))   # six a row at 1.15 in: titles and colour bars fit A4's width at full size
    rows = -(-len(shown) // cols)
    fig, axes = draw.figure(rows, cols, cell=(1.15, 1.45),
                            title=f"Mean Grad-CAM map per class ({layer}; each map normalised to mass 1), "
                                  f"{'images of the ' + where_from + ' split' if where_from != 'selected' else 'selected images'}")
    band = border_mask(size)
    for k, ax in enumerate(axes.flat):
        if k >= len(shown):
            ax.axis("off")
            continue
        c = shown[k]
        border = float((means[c] * band).sum() / max(means[c].sum(), 1e-30))
        im = draw.show_map(ax, means[c], title=f"{ctx.class_names[c]}\nn={int(counts[c])}, border {border:.2f}")
        ax.title.set_fontsize(6.5)
        draw.colorbar(fig, im, ax, "")
    draw.layout(fig, top=0.5)
    files = [draw.save(fig, ctx.out / "where_classes.png"), *short_files]
    return WhereResult(
        files=files, masks="none" if ctx.masks is None else ("object+mark" if "mark" in regs else "object"),
        regions=list(regs), images=len(ctx.indices), border=BORDER, area=areas, methods=methods,
        class_split=where_from, class_layer=str(layer), class_images={ctx.class_names[c]: int(counts[c]) for c in shown},
        class_shares=class_shares, class_area={r: _nanmean(v) for r, v in carea.items()},
        class_mark=class_mark or None, mark_accuracy=mark_acc, mark_predicted=mark_pred, shortcut=shortcut)
