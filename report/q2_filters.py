"""Section 2 (question 2): filter visualization, activations and dataset examples."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from dataset import parse_label
from report.figures import figure, layer_figures
from report.opening import read_looks
from report.parts import Section
from report.phrases import class_name, fmt, mean_of, natural_key
from report.reading import Run


def filter_sentences(res: dict) -> list[str]:
    """Per layer: the optimised images' activation against noise and against the real images."""
    out = []
    for layer, r in sorted((res.get("layers") or {}).items(), key=lambda kv: natural_key(kv[0])):
        if not isinstance(r, dict):
            continue
        plain, robust = mean_of(r.get("plain_activation")), mean_of(r.get("robust_activation"))
        noise, real = mean_of(r.get("noise_activation")), mean_of(r.get("image_mean_activation"))
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


def example_sentences(res: dict, names: list[str], looks: dict | None) -> list[str]:
    """Per layer: the class mix of each filter's top-activating images, so what the filter responds to."""
    look = {c["name"]: c["look"] for c in (looks or {}).get("classes", [])}
    out = []
    for layer, r in sorted((res.get("layers") or {}).items(), key=lambda kv: natural_key(kv[0])):
        ex = r.get("examples") if isinstance(r, dict) else None
        if not isinstance(ex, dict) or not ex:
            continue
        k = len(next(iter(ex.values())))
        bits = []
        for f, rows in sorted(ex.items(), key=lambda kv: natural_key(str(kv[0]))):
            labels = Counter(class_name(names, lb) for e in rows if (lb := parse_label(e["file"])) is not None)
            if not labels:
                continue
            top, count = labels.most_common(1)[0]
            what = f"{top}" + (f", the {look[top]}" if top in look else "")
            bits.append(f"#{f} {count} of {len(rows)} {what}" if count > 1 else f"#{f} mixed ({len(labels)} classes)")
        text = (f"At layer {layer}, the {k} images of the {res.get('examples_split') or 'evaluation'} split "
                f"({res.get('examples_images', '?')} scanned) that excite each filter most show what it responds "
                "to: " + "; ".join(bits) + ". A filter whose top images share a class responds to that class's "
                "look; a mixed one to something several classes share.")
        out.append(text)
    return out


def pattern_phrase(p: dict) -> str:
    """'yellow 62%, stripes at 150 deg', 'mixed colours, no clear stripes' from one filter's recorded pattern."""
    colour = ("mixed colours" if p.get("colour") == "mixed" else
              f"{p.get('colour', '?')} {100 * float(p.get('colour_share') or 0):.0f}%")
    angle = p.get("angle")
    stripes = f"stripes at {float(angle):.0f} deg" if p.get("stripes") and angle is not None else "no clear stripes"
    return f"{colour}, {stripes}"


def pattern_sentences(res: dict, names: list[str], looks: dict | None) -> list[str]:
    """Per layer: what each filter responds to, from its robust optimised image's colour and stripes and the class mix
    of its top-activating images; one sentence per group of filters that share a top class (mixed ones last)."""
    look = {c["name"]: c["look"] for c in (looks or {}).get("classes", [])}
    out = []
    for layer, r in sorted((res.get("layers") or {}).items(), key=lambda kv: natural_key(kv[0])):
        pats = ((r.get("patterns") or {}).get("robust") if isinstance(r, dict) else None) or {}
        if not isinstance(pats, dict) or not pats:
            continue
        ex = r.get("examples") if isinstance(r.get("examples"), dict) else {}
        k = len(next(iter(ex.values()))) if ex else 0
        groups: dict[str | None, list[str]] = {}
        for f, p in sorted(pats.items(), key=lambda kv: natural_key(str(kv[0]))):
            rows = ex.get(str(f)) or []
            labels = Counter(class_name(names, lb) for e in rows if (lb := parse_label(e["file"])) is not None)
            top, count = labels.most_common(1)[0] if labels else (None, 0)
            if count > 1:
                groups.setdefault(top, []).append(f"#{f} ({pattern_phrase(p)}; {count} of {len(rows)})")
            else:
                mix = f"; {len(labels)} classes" if labels else ""
                groups.setdefault(None, []).append(f"#{f} ({pattern_phrase(p)}{mix})")
        alias = f" ({r['alias']})" if r.get("alias") else ""
        stripy = sum(1 for p in pats.values() if p.get("stripes"))
        text = (f"Layer {layer}{alias}: each filter's robust optimised image gives its dominant colour (by hue, with "
                "its share of the pixels) and the direction of its stripes (structure tensor; 0 deg horizontal, 90 "
                f"vertical, 45 like /); {stripy} of the {len(pats)} show clear stripes.")
        if ex:
            text += (f" The {k} images of the {res.get('examples_split') or 'evaluation'} split "
                     f"({res.get('examples_images', '?')} scanned) that excite each filter most show what it responds "
                     f"to; filters are grouped by the class most of their top images share (how many of the {k}).")
        parts = []
        order = sorted((c for c in groups if c is not None), key=lambda c: (-len(groups[c]), c))
        for c in order:
            parts.append(f"{c}{', the ' + look[c] if c in look else ''}: " + "; ".join(groups[c]) + ".")
        if None in groups:
            head = "Mixed top images" if ex else "Filters"
            parts.append(f"{head}: " + "; ".join(groups[None]) + ".")
        plain = (r.get("patterns") or {}).get("plain") or {}
        same = [f for f in pats if isinstance(plain.get(f), dict) and plain[f].get("colour") == pats[f].get("colour")]
        if plain:
            parts.append(f"The plain (course-recipe) images have the same dominant colour for {len(same)} of the "
                         f"{len(pats)} filters.")
        out += [text, " ".join(parts)]
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
        looks = read_looks(Path(str(run.record.get("data") or "")))
        described = pattern_sentences(res, run.class_names, looks)
        # layers without recorded patterns (an older run) keep the class-mix sentence alone
        bare = {"layers": {l: r for l, r in (res.get("layers") or {}).items()
                           if not (isinstance(r, dict) and (r.get("patterns") or {}).get("robust"))}}
        s.paragraphs.extend(described + example_sentences(res | bare, run.class_names, looks))
    if run.exists("filter_activations.png"):
        s.paragraphs.append(
            "Bright frames along the edge of some activation maps come from the padding: each convolution pads its "
            "input with zeros, so a filter that responds to a contrast fires where the image meets the padding, "
            "whatever the food.")
    layers = (run.layers("filters") or "").split(", ")
    for base in ("filter_visualization.png", "filter_visualization_robust.png", "filter_activations.png",
                 "filter_examples.png"):
        names = layer_figures(run, base)
        # the unsuffixed figure shows the one recorded layer that has no suffixed file
        first = [l for l in layers if l and f"{base[:-4]}_{l}.png" not in names]
        for name in names:
            figure(run, name, s, layer=first[0] if name == base and len(layers) > 1 and len(first) == 1 else None)
    return s
