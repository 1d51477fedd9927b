"""Section 6: the audit of a whole split (audit.csv, audit.png), when the run wrote it."""
from __future__ import annotations

import csv
import math

from report.parts import Figure, Section, Table
from report.phrases import class_name, fmt, mean_of
from report.reading import Run


def audit_section(run: Run) -> Section | None:
    """The whole-split audit (audit.csv, audit.png), only when this run wrote audit.csv; else None."""
    if not (run.exists("audit.csv") and run.fresh("audit.csv")):
        return None
    with open(run.out / "audit.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    res = run.results.get("audit") if isinstance(run.results.get("audit"), dict) else {}
    names = run.class_names
    s = Section("7. Audit of a whole split: right for the wrong reason?", refs=["selvaraju", "petsiuk"])
    split, n = res.get("split", "the audited"), len(rows)
    grid, steps, border = res.get("grid", "?"), res.get("steps", "?"), res.get("border")
    s.paragraphs.append(
        f"The audit explains every image of the {split} split ({n} images) with a {grid}x{grid} Grad-CAM map of the "
        f"predicted class (layer {res.get('layer', '?')}), a deletion AUC over the map's cells in {steps} steps, and the "
        "share of the map's mass in the border band"
        + (f" (the outer {border:g} of the side on each edge)" if isinstance(border, (int, float)) else "")
        + (f"; engine {res['engine']}" if res.get("engine") else "")
        + ".")
    num = lambda r, k: float(r[k]) if r.get(k) not in (None, "") else math.nan  # noqa: E731
    labelled = [r for r in rows if r["correct"] != ""]
    if labelled:
        s.paragraphs.append(f"Accuracy on the split: {fmt(sum(r['correct'] == '1' for r in labelled) / len(labelled))}; "
                            f"mean border mass {fmt(mean_of([num(r, 'border_mass') for r in rows]))}, mean deletion "
                            f"AUC {fmt(mean_of([num(r, 'deletion_auc') for r in rows]))}.")
    s.paragraphs.append(
        "Suspicion = confidence x spot mass x (1 - typical mass): the spot mass is the largest share of the map in "
        f"one {res.get('spot', 3)}x{res.get('spot', 3)}-cell block, the typical mass its share on the region where "
        "the split's per-cell median map holds half of its mass (where the model usually looks). It reads maps and "
        "predictions "
        "only, never a mask."
        + (f" A second look then rescores the {res['rescored']} most suspicious of that ranking with integrated "
           f"gradients ({res.get('ig_steps', '?')} steps, blurred baseline), which sees small evidence better than the "
           f"coarse Grad-CAM: confidence x the largest share of the positive IG map in one block x the fall of the "
           f"predicted probability when that block is blurred. Those images are re-ranked by it ahead of the rest "
           f"(its cost: {res['rescored'] * (int(res.get('ig_steps') or 0) + 1)} gradient passes and "
           f"{res['rescored']} forward passes; run.json records its seconds)." if res.get("rescored") else ""))
    top = sorted(rows, key=lambda r: int(r["suspicion_rank"]))[:int(res.get("top") or 16)]
    marked = [r for r in rows if r.get("has_mark") not in (None, "")]
    if marked and len(marked) == n:
        hits = sum(r["has_mark"] == "1" for r in top)
        share = sum(r["has_mark"] == "1" for r in rows) / n
        before = res.get("gradcam_top_marked")
        s.paragraphs.append(f"Graded with the demo's mark masks (never read by the score): {hits} of the {len(top)} "
                            f"most suspicious images carry the planted mark"
                            + (f" ({before} in the Grad-CAM ranking before the second look)"
                               if isinstance(before, int) and res.get("rescored") else "")
                            + f"; {fmt(100 * share, 1)}% of the split does, so about {fmt(share * len(top), 1)} "
                            "would by chance.")
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
                        fmt(mean_of([num(r, "border_mass") for r in mine])),
                        fmt(mean_of([num(r, "suspicion") for r in mine]))])
    if per:
        s.tables.append(Table(["predicted class", "images", "attention patterns (sizes)", "border mass",
                               "mean suspicion"], per, "Per predicted class"))
    if run.exists("audit.png"):
        s.figures.append(Figure("audit.png", "Audit: the most suspicious predictions and the class mean maps",
                                f"The {len(top)} most suspicious images of {split}/ in colour, each beside the "
                                "Grad-CAM map of its predicted class (score: the second look's where it ran); then "
                                "the mean normalised map of every predicted class. 'stamp' marks the images that "
                                "carry the demo's planted mark (from its masks, for grading only)."))
    else:
        s.notes.append("audit.png is not in this output folder.")
    return s
