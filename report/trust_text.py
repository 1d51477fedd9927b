"""Section 6: how far to trust the maps, from trust.json: paired gains over random, sanity, saturation, stability."""
from __future__ import annotations

from typing import Any

import metrics
from report.figures import figure
from report.parts import Section, Table
from report.phrases import METRIC_NAMES, fmt, join_names, method_name
from report.reading import Run

MIN_N = metrics.MIN_INTERVAL_N   # below this many images a mean gets no interval and no verdict
GAIN_NAMES = {"deletion_gain": "deletion", "morf_gain": "deletion", "lerf_gain": "LeRF", "insertion_gain": "insertion"}


def _stat(v: Any) -> tuple[float, float | None, float | None, int] | None:
    """(mean, lo, hi, n) of a trust.json cell {"mean", "lo", "hi", "n"}; None when it holds no value."""
    if not isinstance(v, dict) or v.get("mean") is None:
        return None
    lo, hi = v.get("lo"), v.get("hi")
    return float(v["mean"]), None if lo is None else float(lo), None if hi is None else float(hi), int(v.get("n") or 0)


def trust_table(obj: dict[str, Any]) -> dict[str, dict[str, tuple[float, float | None, float | None, int]]]:
    """method -> metric -> (mean, lo, hi, n) from trust.json's "methods" (in its order: the random baseline last)."""
    table = {}
    for method, row in obj["methods"].items():
        stats = {m: st for m, st in ((m, _stat(row.get(m))) for m in METRIC_NAMES) if st}
        if stats:
            table[method] = stats
    return dict(sorted(table.items(), key=lambda kv: kv[0] == "random"))


def interval(st: tuple[float, float | None, float | None, int], digits: int = 3) -> str:
    """'0.070 [0.039, 0.101]' with n >= MIN_N, else '0.070 (n = 3, no interval)'."""
    mean, lo, hi, n = st
    if n >= MIN_N and lo is not None and hi is not None:
        return f"{fmt(mean, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"
    return f"{fmt(mean, digits)} (n = {n}, no interval)"


def verdict(st: tuple[float, float | None, float | None, int] | None) -> str:
    """'better', 'worse' or 'undecided' for a gain over random: only an interval clear of 0 decides."""
    if st is None or st[3] < MIN_N or st[1] is None or st[2] is None:
        return "undecided"
    return "better" if st[1] > 0 else "worse" if st[2] < 0 else "undecided"


def gain_sentences(vs: dict[str, Any]) -> list[str]:
    """Per method its paired gains over random on the same images, then who is better than random on both."""
    out, both, not_both = [], [], []
    for m, row in vs.items():
        gains = {GAIN_NAMES[g]: st for g in ("morf_gain", "deletion_gain", "insertion_gain", "lerf_gain")
                 if g in row and (st := _stat(row[g]))}
        if not gains:
            continue
        n = max(st[3] for st in gains.values())
        left = row.get("saturated_left_out")
        out.append(f"{method_name(m)} against random on the same {n} images"
                   + (f" ({left} saturated left out)" if left else "") + ": "
                   + ", ".join(f"{k} gain {interval(st)}" for k, st in gains.items()) + ".")
        verdicts = [verdict(gains[k]) for k in ("deletion", "insertion") if k in gains]
        (both if verdicts and all(v == "better" for v in verdicts) else not_both).append(m)
    if both or not_both:
        text = ("Better than random on deletion and insertion (both 95% intervals above 0): "
                + (join_names([method_name(m) for m in both], 8) if both else "no method") + ".")
        if not_both:
            text += (" Not shown better than random on at least one of them (an interval reaches 0 or below, or too "
                     "few images): " + join_names([method_name(m) for m in not_both], 8) + ".")
        out.append(text)
    return out


def sanity_sentence(table: dict, threshold: float) -> str | None:
    """The randomisation check judged by the interval against the threshold, never by the mean alone."""
    rows = [(m, table[m]["sanity_spearman"]) for m in table if "sanity_spearman" in table[m]]
    if not rows:
        return None
    bits, fails, passes, open_ = [], [], [], []
    for m, st in rows:
        bits.append(f"{method_name(m)} {interval(st)}")
        if st[3] < MIN_N or st[1] is None or st[2] is None:
            open_.append(method_name(m))
        elif st[1] >= threshold:
            fails.append(method_name(m))
        elif st[2] < threshold:
            passes.append(method_name(m))
        else:
            open_.append(method_name(m))
    text = ("After the weights are re-initialised, the maps' Spearman correlation with the trained model's maps is "
            + ", ".join(bits) + f"; the check fails at {threshold:g} or more.")
    if passes:
        text += f" Whole interval below {threshold:g} (passes): {join_names(passes, 8)}."
    if fails:
        text += f" Whole interval at or above {threshold:g} (fails): {join_names(fails, 8)}."
    if open_:
        text += f" Interval reaching {threshold:g} or too few images (no verdict): {join_names(open_, 8)}."
    return text


def saturation_sentence(obj: dict[str, Any]) -> str:
    """How many scored images are saturated and how they were handled, or that trust.json has no flags."""
    sat = obj.get("saturation")
    if not isinstance(sat, dict):
        return ("trust.json carries no saturation flags: an image whose fully blurred copy already scores near 1 "
                "adds flat curves to the means.")
    images = sat.get("images") if isinstance(sat.get("images"), dict) else {}
    n = sat.get("n_saturated", sum(bool(v.get("saturated")) for v in images.values()))
    files = sat.get("files") or []
    text = (f"{n} of the {len(images) or '?'} scored images are saturated: the fully blurred image already gives "
            f"the explained class a probability of {fmt(sat.get('threshold'), 2)} or more, so no order of pixels "
            "can move it much")
    text += (f" ({join_names([str(f).split('/')[-1] for f in files], 6)})" if files else "") + "."
    if sat.get("handling"):
        text += f" Handling: {sat['handling']}."
    return text


def stability_sentence(obj: dict[str, Any]) -> str | None:
    """How far two seeds of the seeded methods agree (Spearman and the overlap of their top 5% pixels)."""
    st = obj.get("stability")
    if not isinstance(st, dict) or not st:
        return None
    bits = [f"{method_name(m)} Spearman {fmt(v.get('spearman_mean'), 2)}, top-5% IoU {fmt(v.get('iou_top5_mean'), 2)}"
            for m, v in st.items() if isinstance(v, dict)]
    n = max((int(v.get("n") or 0) for v in st.values() if isinstance(v, dict)), default=0)
    return (f"Stability: the same method run with two seeds on the {n} figure images agrees by " + "; ".join(bits)
            + " (means, no interval on so few images).") if bits else None


def protocol_sentence(obj: dict[str, Any], run: Run) -> str:
    """The deletion protocol in one plain sentence."""
    fill = (obj.get("settings") or {}).get("deletion_fill") or run.setting("deletion_fill")
    how = ("imputed from their neighbours (ROAD), so no black holes give the class away" if fill == "road"
           else "set to black")
    return (f"Deletion takes a map's most important pixels away first, {how}, and records how fast the explained "
            "class's probability falls; insertion pastes them in the same order onto a blurred copy and records how "
            "fast it rises. A map is better than a random map only when the 95% interval of the paired gain, on the "
            "same images, lies above 0.")


def table_rows(table: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per method each metric's mean with its interval (none below MIN_N images) and n."""
    metrics = [m for m in METRIC_NAMES if any(m in v for v in table.values())]
    rows = []
    for method, stats in table.items():
        rows.append([method_name(method)] + ["-" if m not in stats else interval(stats[m]) for m in metrics])
    ns = ["n = " + "/".join(str(k) for k in sorted({stats[m][3] for stats in table.values() if m in stats}))
          for m in metrics]
    return ["method"] + [f"{METRIC_NAMES[m]} ({n})" for m, n in zip(metrics, ns)], rows


def trust_section(run: Run) -> Section:
    """The trust section: protocol, paired gains, sanity, saturation, stability, ground truth, the table."""
    s = Section("6. How far to trust these maps", refs=["petsiuk", "adebayo", "zhang"])
    obj = run.json_file("trust.json")
    table = trust_table(obj) if isinstance(obj, dict) and isinstance(obj.get("methods"), dict) else {}
    if not table:
        state = run.ran("trust")
        s.notes.append("trust.json is not in this output folder (" + (
            f"task trust {state}" if state and state != "ran" else "task trust not run") + "): no trust table."
            if obj is None else "trust.json holds no method x metric table this report can read.")
        return s
    s.paragraphs.append(protocol_sentence(obj, run))
    vs = obj.get("vs_random") if isinstance(obj.get("vs_random"), dict) else {}
    if vs:
        s.paragraphs.extend(gain_sentences(vs))
    else:
        s.notes.append("trust.json holds no paired comparison with random: no method is called better than random.")
    sanity = obj.get("sanity") if isinstance(obj.get("sanity"), dict) else {}
    threshold = sanity.get("threshold") if isinstance(sanity.get("threshold"), (int, float)) else 0.5
    text = sanity_sentence(table, threshold)
    if text:
        s.paragraphs.append(text)
    s.paragraphs.append(saturation_sentence(obj))
    text = stability_sentence(obj)
    if text:
        s.paragraphs.append(text)
    pg = [m for m in table if "pointing_game" in table[m]]
    if pg:
        s.paragraphs.append("Ground truth (the demo's masks): the map's maximum falls on the object (pointing game) "
                            "for " + ", ".join(f"{method_name(m)} {interval(table[m]['pointing_game'], 2)}"
                                               for m in pg) + " of the images.")
    header, rows = table_rows(table)
    s.tables.append(Table(header, rows, "trust.json: mean [95% interval] over images"))
    skipped = obj.get("skipped") if isinstance(obj.get("skipped"), dict) else {}
    s.notes.extend(f"{method_name(m)} not scored: {why}" for m, why in skipped.items())
    for name in ("trust_curves.png", "sanity_check.png"):
        figure(run, name, s)
    return s
