"""Section 5: how far to trust the maps (trust.json: deletion, insertion, sanity check, pointing game)."""
from __future__ import annotations

from typing import Any

from report.figures import figure
from report.parts import Section, Table
from report.phrases import METRIC_NAMES, fmt, join_names, method_name
from report.reading import Run


def _stat(v: dict[str, Any]) -> tuple[float, float | None, int] | None:
    """(mean, std, n) of a trust.json cell {"mean", "std", "n"}; None when it holds no value."""
    if v.get("mean") is None:
        return None
    return float(v["mean"]), (None if v.get("std") is None else float(v["std"])), int(v["n"])


def trust_table(obj: dict[str, Any]) -> dict[str, dict[str, tuple[float, float | None, int]]]:
    """method -> metric -> (mean, std, n) from trust.json's "methods" (in its order: the random baseline last)."""
    table = {}
    for method, row in obj["methods"].items():
        stats = {m: st for m, st in ((m, _stat(row[m])) for m in METRIC_NAMES if m in row) if st}
        if stats:
            table[method] = stats
    return dict(sorted(table.items(), key=lambda kv: kv[0] == "random"))


def sanity_verdicts(obj: Any) -> dict[str, str]:
    """method -> the trust task's own sanity verdict ('passes', 'fails sanity check', ...), when it wrote one."""
    methods = obj.get("methods") if isinstance(obj, dict) else None
    if not isinstance(methods, dict):
        return {}
    return {m: r["sanity_check"] for m, r in methods.items() if isinstance(r, dict) and
            isinstance(r.get("sanity_check"), str)}


def trust_sentences(table: dict, verdicts: dict[str, str] | None = None, threshold: float = 0.5) -> list[str]:
    """Each method's deletion/insertion AUC against the random map, sanity and ground-truth scores."""
    out = []
    rnd = table.get("random")
    methods = [m for m in table if m != "random"]
    for m in methods:
        bits = []
        for metric, better in (("deletion_auc", "lower"), ("insertion_auc", "higher")):
            if metric in table[m]:
                text = f"{METRIC_NAMES[metric]} {fmt(table[m][metric][0])}"
                if rnd and metric in rnd:
                    text += f" vs {fmt(rnd[metric][0])} for a random map"
                bits.append(text)
        if bits:
            out.append(f"{method_name(m)}: {'; '.join(bits)}.")
    if rnd and methods:
        both = [m for m in methods if {"deletion_auc", "insertion_auc"} <= set(table[m])
                and {"deletion_auc", "insertion_auc"} <= set(rnd)]
        beat = [method_name(m) for m in both if table[m]["deletion_auc"][0] < rnd["deletion_auc"][0]
                and table[m]["insertion_auc"][0] > rnd["insertion_auc"][0]]
        if both:
            out.append(f"{len(beat)} of {len(both)} methods beat the random map on both deletion (lower is better) "
                       f"and insertion (higher is better)" + (f": {join_names(beat, 8)}." if beat else "."))
    sanity = [m for m in methods if "sanity_spearman" in table[m]]
    if sanity:
        verdicts = verdicts or {}
        fails = [method_name(m) for m in sanity if (verdicts[m].startswith("fail") if m in verdicts else
                                                    table[m]["sanity_spearman"][0] >= threshold)]
        out.append("After full randomization of the weights, the Spearman correlation with the original map is " +
                   ", ".join(f"{fmt(table[m]['sanity_spearman'][0], 2)} for {method_name(m)}" for m in sanity) + "; " + (
            f"{join_names(fails, 8)} fail{'s' * (len(fails) == 1)} the sanity check (>= {threshold:g})." if fails
            else f"every tested method passes the sanity check (< {threshold:g})."))
    pg = [m for m in table if "pointing_game" in table[m]]
    if pg:
        out.append("Ground truth (masks): pointing game " + ", ".join(
            f"{method_name(m)} {fmt(table[m]['pointing_game'][0], 2)}" for m in pg) + ".")
    return out


def trust_section(run: Run) -> Section:
    """The trust table: faithfulness, sanity check, ground truth."""
    s = Section("5. How far to trust these maps", refs=["petsiuk", "adebayo", "zhang"])
    s.paragraphs.append(
        "Deletion removes the most important pixels first and insertion adds them first (Petsiuk et al. 2018): a "
        "faithful map makes the class probability fall fast (low deletion AUC) and rise fast (high insertion AUC), "
        "compared with a random map. The sanity check (Adebayo et al. 2018) re-initialises the weights: a map that "
        "barely changes does not depend on what the model learned. Where ground-truth masks exist (the demo), "
        "the pointing game (Zhang et al. 2016) asks whether a map's maximum falls on the object.")
    obj = run.json_file("trust.json")
    table = trust_table(obj) if obj else {}
    if table:
        sanity = obj.get("sanity") if isinstance(obj.get("sanity"), dict) else {}
        threshold = sanity.get("threshold") if isinstance(sanity.get("threshold"), (int, float)) else 0.5
        counts = []
        for metric, what in (("deletion_auc", "deletion and insertion"), ("pointing_game", "ground truth"),
                             ("sanity_spearman", "the sanity check")):
            ns = sorted({st[metric][2] for st in table.values() if metric in st and st[metric][2]})
            if ns:
                counts.append(f"{'/'.join(map(str, ns))} image{'s' * (ns != [1])} for {what}")
        if counts:
            s.paragraphs.append(f"Scores are means over {', '.join(counts)}"
                                + (f" ({obj['mode']} mode)." if isinstance(obj.get("mode"), str) else "."))
        s.paragraphs.extend(trust_sentences(table, sanity_verdicts(obj), threshold))
        metrics = [m for m in METRIC_NAMES if any(m in v for v in table.values())]
        verdicts = sanity_verdicts(obj)
        rows = []
        for method, stats in table.items():
            row = [method_name(method)]
            for m in metrics:
                st = stats.get(m)
                row.append("-" if st is None else fmt(st[0]) + (f" ± {fmt(st[1])}" if st[1] is not None else ""))
            verdict = verdicts.get(method, "-")
            verdict = "fails" if verdict.startswith("fail") else "n/a" if verdict.startswith("not") else verdict
            rows.append(row + ([verdict] if verdicts else []))
        s.tables.append(Table(["method"] + [METRIC_NAMES[m] for m in metrics] + (["sanity"] if verdicts else []),
                              rows, "trust.json: mean ± std over images"))
        skipped = obj.get("skipped") if isinstance(obj.get("skipped"), dict) else {}
        s.notes.extend(f"{method_name(m)} not scored: {why}" for m, why in skipped.items())
    elif obj is None:
        state = run.ran("trust")
        s.notes.append("trust.json is not in this output folder (" + (
            f"task trust {state}" if state and state != "ran" else "task trust not run") + "): no trust table.")
    else:
        s.notes.append("trust.json holds no method x metric table this report can read.")
    for name in ("trust_curves.png", "sanity_check.png"):
        figure(run, name, s)
    return s
