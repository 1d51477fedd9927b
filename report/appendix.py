"""The appendix: command, versions, seed, checkpoint, data, settings and per-task timings."""
from __future__ import annotations

from typing import Any

from report.parts import Section, Table
from report.phrases import flatten
from report.reading import Run


# task results that have their own sentences (others are listed in the appendix as they are)
KNOWN_RESULTS = {"where", "shap", "audit", "confusion", "filters", "lime", "lime_classes", "ig", "gradcam", "occlusion", "deepdream", "classviz",
                 "trust"}


def appendix_section(run: Run, in_run: bool) -> Section:
    """Reproducibility: command, versions, seeds, checkpoint, data, settings, per-task timings."""
    s = Section("Appendix: reproducibility")
    r = run.record
    if not r:
        s.notes.append("No run record (run.json) in this output folder: command, versions and timings unknown.")
        return s
    rows = [["command", str(r.get("command", "-"))]]
    versions = r.get("versions") or {}
    rows.append(["versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"])
    rows.append(["seed", f"{r.get('seed', '-')} (every random step seeded from it, keyed by method and image)"])
    rows.append(["checkpoint", str(r.get("checkpoint") or "none")])
    rows.append(["checkpoint sha256", str(r.get("checkpoint_sha256") or "-")])
    rows.append(["arch", f"{r.get('arch', '-')}, input {r.get('input_size', '-')} px"])
    pre = r.get("preprocess") or {}
    if pre:
        rows.append(["preprocessing", f"bgr {pre.get('bgr')}, cv2 {pre.get('cv2')}, mean {pre.get('mean')}, "
                                      f"std {pre.get('std')}"])
    rows.append(["data", f"{r.get('data', '-')}" + (" (embedded demo)" if r.get("demo") else "")])
    rows.append(["device", f"{r.get('device', '-')}, torch threads {r.get('torch_threads', '-')}, forward-only "
                           f"passes in {r.get('precision', 'fp32')} (gradients fp32)"])
    s.tables.append(Table(["item", "value"], rows, "Run"))
    if run.settings:
        pairs = [[k, str(v)] for k, v in sorted(run.settings.items())]
        third = -(-len(pairs) // 3)
        rows = [sum((pairs[i + third * c] if i + third * c < len(pairs) else ["", ""] for c in range(3)), [])
                for i in range(third)]
        s.tables.append(Table(["setting", "value"] * 3, rows, "Settings used"))
    timings = r.get("timings") or {}
    if timings:
        tasks = r.get("tasks") or {}
        prec = {k: v.get("precision", "-") for k, v in run.results.items()}
        trows = [[k, f"{float(timings[k]):.1f}", prec.get(k, "-"), str(tasks.get(k, ""))] for k in run_order(timings)]
        if in_run and "report" not in timings:
            trows.append(["report", "-", "-", "this report (still running when the table was written)"])
        s.tables.append(Table(["task", "seconds", "precision", "files or note"], trows,
                              "Per-task wall time" + (f" (total{' so far' if in_run else ''} {float(r['total_seconds']):.1f} s)"
                                                      if r.get("total_seconds") is not None else "")))
    if r.get("budget"):      # the opt-in time-budget planner's changes
        rows = [[k, v] for k, v in flatten(r["budget"])][:24]
        if rows:
            s.tables.append(Table(["quantity", "value"], rows, "Time-budget planner: settings it changed"))
    other = [(k, v) for task, res in run.results.items() if task not in KNOWN_RESULTS
             for k, v in flatten({key: val for key, val in res.items() if key != "precision"}, f"{task}.")][:24]
    if other:
        s.tables.append(Table(["quantity", "value"], [list(kv) for kv in other], "Other numbers the tasks recorded"))
    return s


def run_order(names: Any) -> list[str]:
    """Task names in the order a run executes them (train, setup, then the registry), unknown ones last."""
    import tasks

    order = ["train", "setup"] + tasks.names()
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))
