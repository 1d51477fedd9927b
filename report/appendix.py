"""The appendix: versions, seed, checkpoint hash and the non-default settings (no machine paths, no clock times)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from report.parts import Section, Table
from report.reading import Run


def non_default(run: Run) -> list[list[str]]:
    """The settings this run used that differ from the device type's defaults."""
    import settings

    device = str(run.record.get("device") or "cpu")
    base = settings.resolve("cuda" if device.startswith("cuda") else "cpu")
    return [[k, str(v)] for k, v in sorted(run.settings.items()) if k in base and base[k] != v]


def appendix_section(run: Run, in_run: bool) -> Section:
    """Reproducibility: versions, seed, checkpoint hash, model and the settings that differ from the defaults."""
    s = Section("Appendix: reproducibility")
    r = run.record
    if not r:
        s.notes.append("No run record (run.json) in this output folder: versions and settings unknown.")
        return s
    rows = [["versions", ", ".join(f"{k} {v}" for k, v in (r.get("versions") or {}).items()) or "-"],
            ["seed", f"{r.get('seed', '-')} (every random step seeded from it, keyed by method and image)"],
            ["checkpoint sha256", str(r.get("checkpoint_sha256") or "-")],
            ["model", f"{r.get('arch', '-')}, input {r.get('input_size', '-')} px"],
            ["data", "the embedded demo" if r.get("demo") else Path(str(r.get("data") or "-")).name],
            ["device", f"{str(r.get('device', '-')).split(':')[0]}, forward-only passes in "
                       f"{r.get('precision', 'fp32')} (gradients fp32)"]]
    pre = r.get("preprocess") or {}
    if pre:
        rows.append(["preprocessing", f"bgr {pre.get('bgr')}, cv2 {pre.get('cv2')}, mean {pre.get('mean')}, "
                                      f"std {pre.get('std')}"])
    s.tables.append(Table(["item", "value"], rows, "Run"))
    changed = non_default(run)
    s.paragraphs.append("Settings that differ from the defaults: " + (
        "; ".join(f"{k} = {v}" for k, v in changed) if changed else "none") + ". Every other setting, the command "
        "and the per-task timings are in run.json.")
    timings = r.get("timings") or {}
    if timings:
        trows = [[k, f"{float(timings[k]):.1f}", str((r.get("tasks") or {}).get(k, ""))] for k in run_order(timings)]
        if in_run and "report" not in timings:
            trows.append(["report", "-", "this report (still running when the table was written)"])
        s.html_tables.append(Table(["task", "seconds", "files or note"], trows, "Per-task wall time (run.json)"))
    changes = (r.get("budget") or {}).get("changes") or []
    if changes:      # what the time-budget planner scaled down; a model that fits changes nothing
        s.tables.append(Table(["change"], [[str(c)] for c in changes], "Time-budget planner: settings it changed"))
    return s


def run_order(names: Any) -> list[str]:
    """Task names in the order a run executes them (train, setup, then the registry), unknown ones last."""
    import tasks

    order = ["train", "setup"] + tasks.names()
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))
