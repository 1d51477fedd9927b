"""Section 1 (question 1): saliency maps and where the maps put their mass."""
from __future__ import annotations

from report.figures import figure
from report.parts import Section, Table
from report.phrases import fmt, method_name
from report.reading import Run


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
        s.html_tables.append(where_table(where))     # the sentences above give its numbers in the PDF
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
        out.append("With the demo's masks we measure the share of each map's positive mass on the object, "
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
        where_from = (f"{sum(w.get('class_images', {}).values())} images of the {w['class_split']} split"
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
