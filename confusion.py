"""Whole-split evaluation: the confusion matrix figure and CSVs, from predictions cached in the run context.

Up to MAX_GRID classes the figure is the whole matrix; with more, it shows the most-confused classes (those of the
largest off-diagonal counts) and a table of the top confusions, while confusion_matrix.csv keeps every class.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from outputs import write_csv
from records import ConfusionResult

MAX_GRID = 20      # classes a readable matrix figure shows
LIME_CLASS_ROWS = 8   # lime_classes with more than MAX_GRID classes: rows for the most-missed classes only
TOP_CONFUSIONS = 15


def confusion_counts(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts[true, pred] over the images."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, preds), 1)
    return counts


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class with no images)."""
    totals = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(counts) / np.maximum(totals, 1), np.nan)


def most_confused(counts: np.ndarray) -> np.ndarray:
    """For each true class, the other class it is most often predicted as (-1 when never wrong)."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    return np.where(off.max(1) > 0, off.argmax(1), -1)


def top_confusions(counts: np.ndarray, k: int = TOP_CONFUSIONS) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count), largest first (ties: lower ids first)."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    flat = np.flatnonzero(off)
    order = flat[np.lexsort((flat, -off.flat[flat]))][:k]
    return [(int(i // off.shape[1]), int(i % off.shape[1]), int(off.flat[i])) for i in order]


def confused_classes(counts: np.ndarray, k: int = MAX_GRID) -> list[int]:
    """Up to k classes: those of the largest confusions (both sides of each pair), then the most-missed classes."""
    picked: list[int] = []
    for t, p, _ in top_confusions(counts, counts.size):
        picked += [c for c in (t, p) if c not in picked]
        if len(picked) >= k:
            return sorted(picked[:k])
    missed = counts.sum(1) - np.diag(counts)
    for c in np.lexsort((np.arange(len(counts)), -missed)):
        if len(picked) >= k:
            break
        if int(c) not in picked:
            picked.append(int(c))
    return sorted(picked)


def most_missed(counts: np.ndarray, k: int) -> list[int]:
    """The k classes with the most misclassified images, most first (ties: lower ids first)."""
    missed = counts.sum(1) - np.diag(counts)
    return [int(c) for c in np.lexsort((np.arange(len(counts)), -missed))[:k]]


def draw_confusion(counts: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    """Row-normalised matrix with counts in every cell and per-class accuracy on the row labels; with more than
    MAX_GRID classes, the most-confused classes' matrix and a top-confusions table instead."""
    import draw

    if len(names) > MAX_GRID:
        return _draw_confused(counts, names, title, path)
    n = len(names)
    rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    acc = per_class_accuracy(counts)
    fig, axes = draw.figure(1, 1, cell=(0.55 * n + 3.2, 0.42 * n + 1.8), title=title, snug=True)
    ax = axes[0, 0]
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(n))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{nm} ({'-' if np.isnan(a) else f'{a:.2f}'})" for nm, a in zip(names, acc)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (per-class accuracy)")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(j, i, f"{rows[i, j]:.2f}\n{counts[i, j]}", ha="center", va="center", fontsize=6,
                        color="white" if rows[i, j] > 0.6 else "black")
    draw.colorbar(fig, im, ax, "fraction of the true class")
    return draw.save(fig, path)


def _draw_confused(counts: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    """Many classes: the matrix of the most-confused classes (row-normalised over each whole row, plus an 'other
    classes' column) beside a table of the top confusions."""
    import draw

    cls = confused_classes(counts)
    totals = np.maximum(counts.sum(1), 1)
    sub = counts[np.ix_(cls, cls)]
    other = counts[cls].sum(1) - sub.sum(1)
    grid = np.concatenate([sub, other[:, None]], 1)
    rows = grid / totals[cls][:, None]
    acc = per_class_accuracy(counts)
    n = len(cls)
    grid_w, table_w = 0.42 * n + 4.0, 5.5
    fig, axes = draw.figure(1, 2, cell=((grid_w + table_w) / 2, 0.4 * n + 2.6),
                            title=f"{title}\nthe {n} most-confused of {len(names)} classes (every class: "
                                  f"confusion_matrix.csv)")
    axes[0, 0].get_gridspec().set_width_ratios([grid_w, table_w])
    ax, table = axes[0]
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    short = [nm if len(nm) <= 22 else nm[:21] + "…" for nm in names]
    ax.set_xticks(range(n + 1))
    ax.set_xticklabels([short[c] for c in cls] + ["other classes"], rotation=60, ha="right", fontsize=6)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{short[c]} ({'-' if np.isnan(acc[c]) else f'{acc[c]:.2f}'})" for c in cls], fontsize=6)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (per-class accuracy)")
    for i in range(n):
        for j in range(n + 1):
            if grid[i, j]:
                ax.text(j, i, f"{grid[i, j]}", ha="center", va="center", fontsize=5,
                        color="white" if rows[i, j] > 0.6 else "black")
    draw.colorbar(fig, im, ax, "fraction of the true class")
    top = top_confusions(counts)
    lines = [f"{k + 1:>2}. {short[t]} -> {short[p]}: {c} ({c / totals[t]:.0%} of {short[t]})"
             for k, (t, p, c) in enumerate(top)] or ["no image is misclassified"]
    table.axis("off")
    table.set_title(f"top {len(top)} confusions (true -> predicted: images)", fontsize=8)
    table.text(0.0, 1.0, "\n".join(lines), transform=table.transAxes, va="top", ha="left", fontsize=7,
               family="monospace")
    draw.layout(fig, bottom=1.4)   # the rotated class names below the matrix
    return draw.save(fig, path)


def task_confusion(ctx) -> ConfusionResult:
    """Predict a whole labelled split (validation by default) and write the confusion matrix and CSVs."""
    from draw import readable
    from errors import UserError

    split = ctx.opts.eval_split
    pred = ctx.eval_predictions()
    labels, probs = pred["labels"], pred["probs"]
    if labels.max() >= ctx.num_classes:
        raise UserError(f"{split}/{pred['files'][int(labels.argmax())]} has label {labels.max()} but the model has "
                        f"{ctx.num_classes} classes (labels 0..{ctx.num_classes - 1})")
    preds = probs.argmax(1)
    counts = confusion_counts(labels, preds, ctx.num_classes)
    acc = float((preds == labels).mean())
    title = f"Confusion matrix on {split} ({len(labels)} images, accuracy {acc:.3f})"
    files = [draw_confusion(counts, [readable(n) for n in ctx.class_names], title,
                            ctx.out / "confusion_matrix.png")]
    files.append(write_csv(ctx.out / "confusion_matrix.csv", ["true \\ predicted"] + ctx.class_names,
                           [[n] + list(map(int, r)) for n, r in zip(ctx.class_names, counts)]))
    files.append(write_csv(ctx.out / "predictions.csv",
                           ["file", "label", "label_name", "pred", "pred_name", "prob_pred"],
                           [[f, int(lb), ctx.class_names[lb], int(p), ctx.class_names[p], f"{pr[p]:.6f}"]
                            for f, lb, p, pr in zip(pred["files"], labels, preds, probs)]))
    return ConfusionResult(files=files, split=split, images=int(len(labels)), accuracy=acc,
                           precision="fp32" if ctx.precision == "fp32" else "bf16, fp32 re-check",
                           rechecked_fp32=int(pred["rechecked"]),
                           per_class_accuracy={n: (None if np.isnan(a) else float(a)) for n, a in
                                               zip(ctx.class_names, per_class_accuracy(counts))},
                           most_confused={n: (ctx.class_names[c] if c >= 0 else None) for n, c in
                                          zip(ctx.class_names, most_confused(counts))},
                           top_confusions=[{"true": ctx.class_names[t], "pred": ctx.class_names[p], "images": int(c)}
                                           for t, p, c in top_confusions(counts)])
