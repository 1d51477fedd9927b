"""The shortcut: how much the model leans on the demo's planted stamp, from predictions.csv, truth.csv and `where`."""
from __future__ import annotations

import csv
from pathlib import Path

from report.figures import figure
from report.opening import read_looks, read_truth
from report.parts import Section
from report.phrases import fmt
from report.reading import Run


def read_predictions(path: Path) -> list[dict]:
    """predictions.csv rows (file, label, pred, ...), or [] when absent."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def stamp_counts(preds: list[dict], marked: dict[str, bool], cls: int) -> dict[str, tuple[int, int]]:
    """(hits, images) for: accuracy with / without the stamp, and other classes' images called `cls` with / without."""
    out = {k: (0, 0) for k in ("acc_with", "acc_without", "called_with", "called_without")}

    def add(key: str, hit: bool) -> None:
        h, n = out[key]
        out[key] = (h + hit, n + 1)

    for r in preds:
        if r["file"] not in marked or r["label"] in ("", "-1"):
            continue
        stamped, label, pred = marked[r["file"]], int(r["label"]), int(r["pred"])
        add("acc_with" if stamped else "acc_without", pred == label)
        if label != cls:
            add("called_with" if stamped else "called_without", pred == cls)
    return out


def shortcut_section(run: Run) -> Section:
    """The stamp as a story: where it sits, what it does to accuracy, and how often it turns an image into its class."""
    s = Section("5. The shortcut: does the model read the stamp?")
    data = Path(str(run.record.get("data") or ""))
    looks = read_looks(data)
    truth = read_truth(data) if looks else []
    split = (run.results.get("confusion") or {}).get("split", "validation")
    preds = read_predictions(run.out / "predictions.csv") if run.fresh("predictions.csv") else []
    if not (looks and truth):
        s.paragraphs.append("This data has no planted mark with a known place, so there is no shortcut to measure "
                            "here; the section needs the demo's stamp (truth.csv and classes.json).")
        return s
    if not preds:
        s.notes.append("predictions.csv is not in this output folder (task confusion not run): no stamp numbers.")
        return s
    name = looks["stamp"]["class"]
    names = run.class_names
    cls = names.index(name) if name in names else -1
    marked = {r["name"]: r["mark"] == "1" for r in truth if r["split"] == split}
    c = stamp_counts(preds, marked, cls)
    rate = lambda k: fmt(c[k][0] / c[k][1], 2) if c[k][1] else "-"  # noqa: E731
    s.paragraphs.append(
        f"In training, the stamp sits mostly on {name} images (section 0). On the {split} split it sits on every "
        f"class alike, so a model that reads the stamp as '{name}' loses accuracy on stamped images. "
        f"The accuracy is {rate('acc_with')} on the {c['acc_with'][1]} stamped images and {rate('acc_without')} on "
        f"the {c['acc_without'][1]} unstamped ones. Of the {c['called_with'][1]} stamped images of other classes "
        f"(real {name} images are not counted), {c['called_with'][0]} "
        f"({fmt(100 * c['called_with'][0] / max(1, c['called_with'][1]), 0)}%) "
        f"are called {name}, against {c['called_without'][0]} of the {c['called_without'][1]} unstamped ones "
        f"({fmt(100 * c['called_without'][0] / max(1, c['called_without'][1]), 0)}%).")
    w = run.results.get("where") if isinstance(run.results.get("where"), dict) else {}
    acc = (w.get("mark_accuracy") or {}).get(name) or {}
    mark = (w.get("class_mark") or {}).get(name) or {}
    bits = []
    if isinstance(acc.get("with"), (int, float)) and isinstance(acc.get("without"), (int, float)):
        bits.append(f"{name} itself is right on {fmt(acc['with'], 2)} of its {acc['n_with']} stamped images and "
                    f"{fmt(acc['without'], 2)} of its {acc['n_without']} unstamped ones")
    if isinstance(mark.get("share"), (int, float)) and mark.get("area"):
        bits.append(f"on stamped {name} images Grad-CAM ({w.get('class_layer', 'last layer')}) puts "
                    f"{fmt(mark['share'], 3)} of its mass on the stamp, {fmt(mark['share'] / mark['area'], 1)}x the "
                    f"stamp's area ({fmt(mark['area'], 3)}, over {mark.get('images', '?')} images)")
    if bits:
        s.paragraphs.append("; ".join(bits)[0].upper() + "; ".join(bits)[1:] + ".")
    pair = w.get("shortcut") if isinstance(w.get("shortcut"), dict) else None
    if pair and pair.get("files"):
        s.paragraphs.append(pair_sentence(pair))
        figure(run, "shortcut.png", s)
    audit = run.results.get("audit") if isinstance(run.results.get("audit"), dict) else {}
    if run.exists("audit.csv") and run.fresh("audit.csv") and isinstance(audit.get("top_marked"), int):
        s.paragraphs.append(
            f"The audit of the whole {audit.get('split', '')} split (section 7) looks for such a spot without the "
            f"masks: {audit['top_marked']} of its {audit.get('top', 16)} most suspicious images carry the stamp, "
            f"where {fmt(100 * (audit.get('marked_share') or 0), 0)}% of the split does.")
    elif run.exists("audit.csv"):
        s.paragraphs.append("The audit of the whole split (section 7) searches for such a spot without the masks.")
    return s


def pair_sentence(pair: dict) -> str:
    """One sentence per image of shortcut.png: what it is, what it is called, and the maps' shares on the stamp."""
    cls, bits = pair.get("class", "?"), []
    for k, f in enumerate(pair["files"]):
        label = pair["labels"][k]
        area = pair["mark_area"][k]
        gc, lime = pair["mark_share"]["gradcam"][k], pair["mark_share"]["lime"][k]
        what = f"a stamped {label} image" if label == cls else f"a stamped {label} image that the model calls {cls}"
        pct = lambda v: f"{fmt(100 * v, 0)}%" if isinstance(v, (int, float)) else "no share (no positive mass)"  # noqa: E731
        times = f" ({fmt(gc / area, 1)}x its area)" if isinstance(gc, (int, float)) and area else ""
        bits.append(f"On {pair['split']}/{f}, {what} (p = {fmt(pair['probs'][k], 2)}), the stamp covers "
                    f"{fmt(100 * area, 1)}% of the image; Grad-CAM puts {pct(gc)} of its positive mass on it{times}, "
                    f"LIME {pct(lime)}")
    return "; ".join(bits) + " (shortcut.png)."
