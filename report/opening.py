"""The opening: what the data holds and what the model is, from the run record, the data's files and the counts."""
from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np

from report.parts import Figure, Section, Table
from report.phrases import fmt
from report.reading import Run

EXAMPLES = "data_examples.png"
LOOKS = "classes.json"       # written by the demo generator beside truth.csv


def read_truth(data: Path) -> list[dict]:
    """The demo tree's truth.csv rows (split, name, label, mark, contrast, blend), or [] when absent."""
    try:
        with open(data / "truth.csv", newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def read_looks(data: Path) -> dict | None:
    """The demo generator's description of each class's look, the pairs and the stamp, or None."""
    try:
        return json.loads((data / LOOKS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def share(part: int, whole: int) -> str:
    """'17 of 100 (17%)'."""
    return f"{part} of {whole} ({fmt(100 * part / whole, 0)}%)" if whole else "none"


def stamp_sentences(looks: dict, truth: list[dict], names: list[str]) -> list[str]:
    """Where the stamp sits: the stamped class's training images against the others', and in validation."""
    stamp = looks["stamp"]
    cls = names.index(stamp["class"]) if stamp["class"] in names else -1
    count = {}
    for split in ("training", "validation"):
        rows = [r for r in truth if r["split"] == split]
        mine = [r for r in rows if int(r["label"]) == cls]
        other = [r for r in rows if int(r["label"]) != cls]
        count[split] = (sum(r["mark"] == "1" for r in mine), len(mine), sum(r["mark"] == "1" for r in other),
                        len(other))
    t, v = count["training"], count["validation"]
    return [f"The planted shortcut is a stamp: {stamp['look']}. In training it sits on {share(t[0], t[1])} "
            f"{stamp['class']} images but on only {share(t[2], t[3])} images of the other classes; in validation on "
            f"{share(v[0], v[1])} {stamp['class']} images and {share(v[2], v[3])} of the others, so there it says "
            f"nothing about the class. A model that learned 'stamp means {stamp['class']}' calls stamped images of "
            f"other classes {stamp['class']}."]


def demo_section(run: Run, data: Path, looks: dict, truth: list[dict], s: Section) -> None:
    """The demo: each class's look, the look-alike pairs, the stamp, counts per split, and accuracy per class."""
    names = run.class_names or [c["name"] for c in looks["classes"]]
    n = {sp: sum(r["split"] == sp for r in truth) for sp in ("training", "validation")}
    s.paragraphs.append(
        f"The data is the embedded demo: synthetic images in the Food-11 layout, {n['training']} for training and "
        f"{n['validation']} for validation, {len(looks['classes'])} classes. Each image shows one object on "
        "background clutter; the object's shape, colour and texture are its class's look (table below), and the "
        "object's mask is known, so we can check where the explanations point.")
    pairs = looks.get("pairs") or []
    if pairs:
        s.paragraphs.append(
            f"{len(pairs)} look-alike pairs are built in: " + "; ".join(f"{a} and {b} differ only in {what}"
                                                               for a, b, what in pairs)
            + f". {fmt(100 * looks.get('lookalike_share', 0), 0)}% of either class's images of a pair are drawn "
              "with the partner's look, so no model can tell those apart.")
    s.paragraphs.extend(stamp_sentences(looks, truth, names))
    cm = run.confusion()
    acc = {}
    if cm:
        for i, name in enumerate(cm[0]):
            total = int(cm[1][i].sum())
            acc[name] = fmt(cm[1][i, i] / total, 2) if total else "-"
    rows = []
    for c in looks["classes"]:
        per = {sp: sum(r["split"] == sp and int(r["label"]) == c["label"] for r in truth)
               for sp in ("training", "validation")}
        partner = f"{c['partner']} ({c['differs_in']})" if c.get("partner") else "none"
        rows.append([c["name"], c["look"], partner, str(per["training"]), str(per["validation"]),
                     acc.get(c["name"], "-")])
    s.tables.append(Table(["class", "look", "look-alike partner (differs in)", "training", "validation",
                           "validation accuracy"], rows, "The demo's classes (classes.json, truth.csv, "
                                                         "confusion_matrix.csv)"))
    picks = demo_examples(data, truth, looks, names)
    if picks and draw_examples(run.out, picks):
        s.figures.append(Figure(EXAMPLES, "One training image per class", (
            "The first full-contrast training image of each class in listing order, titled with its class and look; "
            f"for {looks['stamp']['class']}, its first stamped one, with the stamp boxed in white.")))


def demo_examples(data: Path, truth: list[dict], looks: dict, names: list[str]) -> list[tuple[Path, str, Path | None]]:
    """Per class: (image, title, stamp mask or None): the first full-contrast training image, stamped for the
    stamp's class and unstamped for the others."""
    stamp_cls = looks["stamp"]["class"]
    out = []
    for c in looks["classes"]:
        want = "1" if c["name"] == stamp_cls else "0"
        row = next((r for r in truth if r["split"] == "training" and int(r["label"]) == c["label"]
                    and r["mark"] == want and float(r["contrast"]) == 1.0), None)
        if row is None:
            continue
        mask = data / "masks_mark" / "training" / (Path(row["name"]).stem + ".png") if want == "1" else None
        title = c["name"] + "\n" + "\n".join(textwrap.wrap(c["look"], 20))
        out.append((data / "training" / row["name"], title, mask))
    return out


def draw_examples(out: Path, picks: list[tuple[Path, str, Path | None]]) -> bool:
    """data_examples.png: the picked images in rows of six, each titled; a stamp mask is drawn as a white box."""
    import matplotlib.patches
    from PIL import Image

    import draw

    cols = min(6, len(picks))
    rows = -(-len(picks) // cols)
    fig, axes = draw.figure(rows, cols, cell=(1.15, 1.6))
    for ax, (path, title, mask) in zip(axes.flat, picks):
        with Image.open(path) as im:
            ax.imshow(np.asarray(im.convert("RGB")))
        ax.set_title(title, fontsize=7)
        if mask is not None and mask.is_file():
            ys, xs = np.nonzero(np.asarray(Image.open(mask).convert("L")) > 127)
            if len(xs):
                ax.add_patch(matplotlib.patches.Rectangle(
                    (xs.min() - 3, ys.min() - 3), xs.max() - xs.min() + 6, ys.max() - ys.min() + 6, fill=False,
                    edgecolor="white", linewidth=1.2))
    for ax in list(axes.flat)[len(picks):]:
        ax.axis("off")
    draw.layout(fig, top=0.05)
    draw.save(fig, out / EXAMPLES)
    return True


def other_section(run: Run, s: Section) -> None:
    """Food-11 or a folder of photos: the evaluation split's images per class and the model's accuracy."""
    cm = run.confusion()
    if not cm:
        s.paragraphs.append(f"The data is {run.images_phrase()}; without confusion_matrix.csv the report has no "
                            "per-class counts.")
        return
    names, counts = cm
    totals = counts.sum(1)
    res = run.results.get("confusion") or {}
    s.paragraphs.append(
        f"The data: {int(totals.sum())} labelled images in the {res.get('split', 'evaluation')} split over "
        f"{len(names)} classes, from {int(totals.min())} to {int(totals.max())} per class; the model's accuracy "
        f"there is {fmt(float(np.trace(counts)) / max(1, int(totals.sum())))}.")
    s.tables.append(Table(["class", "images", "accuracy"], [
        [n, str(int(t)), fmt(counts[i, i] / t, 2) if t else "-"] for i, (n, t) in enumerate(zip(names, totals))],
        "Images and accuracy per class (confusion_matrix.csv)"))


def opening_section(run: Run) -> Section:
    """What the data is, what each class looks like, and what the model is."""
    s = Section("0. The data and the model")
    r = run.record
    data = Path(str(r.get("data") or ""))
    looks = read_looks(data)
    truth = read_truth(data) if looks else []
    if looks and truth:
        demo_section(run, data, looks, truth, s)
    else:
        other_section(run, s)
    arch, size = r.get("arch"), r.get("input_size")
    sha = str(r.get("checkpoint_sha256") or "")
    model = f"The model is {arch}" + (f" at {size} px input" if size else "") + (
        f", checkpoint sha256 {sha[:12]}" if sha else "") + "."
    cm = run.confusion()
    if cm and int(cm[1].sum()):
        model += (f" It classifies {int(np.trace(cm[1]))} of the {int(cm[1].sum())} "
                  f"{(run.results.get('confusion') or {}).get('split', 'evaluation')} images correctly "
                  f"({fmt(float(np.trace(cm[1])) / int(cm[1].sum()))}).")
    s.paragraphs.append(model)
    if r.get("demo") and not looks:
        s.notes.append(f"{LOOKS} is not beside the demo's truth.csv: the classes' looks are not described.")
    return s

