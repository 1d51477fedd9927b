"""Whole-split evaluation: the confusion matrix figure and CSVs, from predictions cached in the run context."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from outputs import write_csv
from records import ConfusionResult


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


def draw_confusion(counts: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    """Row-normalised matrix with counts in every cell and per-class accuracy on the row labels."""
    import draw

    n = len(names)
    rows = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    acc = per_class_accuracy(counts)
    fig, axes = draw.figure(1, 1, cell=(0.55 * n + 3.2, 0.5 * n + 2.2), title=title)
    ax = axes[0, 0]
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
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
    draw.layout(fig)
    return draw.save(fig, path)


def task_confusion(ctx) -> ConfusionResult:
    """Predict a whole labelled split (validation by default) and write the confusion matrix and CSVs."""
    split = ctx.opts.eval_split
    pred = ctx.eval_predictions()
    labels, probs = pred["labels"], pred["probs"]
    preds = probs.argmax(1)
    counts = confusion_counts(labels, preds, ctx.num_classes)
    acc = float((preds == labels).mean())
    title = f"Confusion matrix on {split} ({len(labels)} images, accuracy {acc:.3f})"
    files = [draw_confusion(counts, ctx.class_names, title, ctx.out / "confusion_matrix.png")]
    files.append(write_csv(ctx.out / "confusion_matrix.csv", ["true \\ predicted"] + ctx.class_names,
                           [[n] + list(map(int, r)) for n, r in zip(ctx.class_names, counts)]))
    files.append(write_csv(ctx.out / "predictions.csv",
                           ["file", "label", "label_name", "pred", "pred_name", "prob_pred"],
                           [[f, int(lb), ctx.class_names[lb], int(p), ctx.class_names[p], f"{pr[p]:.6f}"]
                            for f, lb, p, pr in zip(pred["files"], labels, preds, probs)]))
    return ConfusionResult(files=files, split=split, images=int(len(labels)), accuracy=acc,
                           per_class_accuracy={n: (None if np.isnan(a) else float(a)) for n, a in
                                               zip(ctx.class_names, per_class_accuracy(counts))},
                           most_confused={n: (ctx.class_names[c] if c >= 0 else None) for n, c in
                                          zip(ctx.class_names, most_confused(counts))})
