"""Section 3 (question 3): LIME per class and the confusion matrix."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from report.figures import figure
from report.opening import read_looks
from report.parts import Section, Table
from report.phrases import fmt, join_names
from report.reading import Run


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
    lime = (w.get("methods") or {}).get("lime") or {}
    if isinstance(lime.get(key), (int, float)) and (w.get("area") or {}).get(key):
        out.append(f"LIME's positive weight on the selected images lies {fmt(lime[key], 2)} "
                   f"{'on the object' if key == 'object' else 'in the centre'} (area {fmt(w['area'][key], 2)})"
                   + (f" and {fmt(lime['mark'], 3)} on the mark" if isinstance(lime.get("mark"), (int, float)) else "")
                   + "; lime_classes.png shows each class's most confident right and wrong image.")
    return out


def pair_sentences(names: list[str], counts: np.ndarray, looks: dict) -> list[str]:
    """Class by class from the demo's looks: each look-alike pair's two cells, then the classes with no partner."""
    totals = counts.sum(1)
    idx = {n: i for i, n in enumerate(names)}
    acc = {n: counts[i, i] / totals[i] for n, i in idx.items() if totals[i]}
    out = []
    for a, b, what in looks.get("pairs") or []:
        if a not in idx or b not in idx:
            continue
        i, j = idx[a], idx[b]
        out.append(f"{a} and {b} are a planted look-alike pair (they differ only in {what}): {int(counts[i, j])} of "
                   f"{int(totals[i])} {a} images are called {b} and {int(counts[j, i])} of {int(totals[j])} {b} "
                   f"images {a}; accuracy {fmt(acc.get(a), 2)} and {fmt(acc.get(b), 2)}.")
    alone = [c["name"] for c in looks.get("classes") or [] if not c.get("partner") and c["name"] in acc]
    stamp = (looks.get("stamp") or {}).get("class")
    clean = [n for n in alone if n != stamp]
    if clean:
        out.append("The classes with no look-alike partner do best: " + ", ".join(
            f"{n} {fmt(acc[n], 2)}" for n in sorted(clean, key=lambda n: -acc[n]))
            + ". Their look is unique, so nothing else in the data resembles them.")
    if stamp in alone and clean and acc[stamp] < min(acc[n] for n in clean):
        out.append(f"{stamp} has no look-alike partner either, but reaches only {fmt(acc[stamp], 2)}: it leans on the "
                   "planted stamp instead of its object (section 5).")
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
        looks = read_looks(Path(str(run.record.get("data") or "")))
        if looks:
            s.paragraphs.extend(pair_sentences(cm[0], cm[1], looks))
        s.tables.append(confusion_table(*cm))
    else:
        s.notes.append("confusion_matrix.csv is not in this output folder (task confusion not run or skipped): "
                       "no per-class accuracy.")
    if isinstance(run.results.get("lime"), dict):
        s.paragraphs.extend(lime_sentences(run.results["lime"]))
    table = lime_classes_table(run.results.get("lime_classes") or {})
    if table:
        s.html_tables.append(table)     # the figure's panel titles name the same images in the PDF
    for name in ("confusion_matrix.png", "lime.png", "lime_details.png", "lime_classes.png"):
        figure(run, name, s)
    return s
