"""The report's content: sections of sentences, tables and captioned figures, filled from one output folder.

Every number in a sentence comes from this run's files or run record; a missing file or task is left out with a
one-line note. Pure functions: (output folder, run record) -> Report; drawing lives in render_pdf.py and render_html.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from report.appendix import appendix_section
from report.audit_text import audit_section
from report.opening import opening_section
from report.parts import Report, Section
from report.q1_saliency import saliency_section
from report.q2_filters import filters_section
from report.q3_lime import lime_section
from report.q4_further import further_section
from report.shortcut import shortcut_section
from report.reading import Run
from report.trust_text import trust_section


def safe(make: Callable[[Run], Section], run: Run, title: str) -> Section:
    """A section, or a one-line note when this folder holds something it cannot read (never a crash)."""
    try:
        return make(run)
    except Exception as exc:  # noqa: BLE001 - files written by other tasks must not break the report
        return Section(title, notes=[f"this section could not be built from the output folder: "
                                     f"{type(exc).__name__}: {exc}"])


def build_report(out: Path, record: dict, in_run: bool = False) -> Report:
    """All sections for one output folder and run record (in_run: built by the run's own report task)."""
    run = Run(Path(out), record or {})
    sections = [safe(opening_section, run, "0. The data and the model"),
                safe(saliency_section, run, "1. Saliency maps"), safe(filters_section, run, "2. Filters"),
                safe(lime_section, run, "3. LIME and the confusion matrix"),
                safe(further_section, run, "4. Further methods"), safe(shortcut_section, run, "5. The shortcut"),
                safe(trust_section, run, "6. Trust"),
                safe(lambda r: appendix_section(r, in_run), run, "Appendix: reproducibility")]
    audit = safe(lambda r: audit_section(r) or Section(""), run, "7. Audit")   # only when the run wrote audit.csv
    if audit.title:
        sections.insert(-1, audit)
    arch = record.get("arch") if record else None
    data = record.get("data") if record else None
    subtitle = ", ".join(x for x in (f"model {arch}" if arch else "", f"data {Path(data).name}" if data else "",
                                     f"seed {record.get('seed')}" if record and "seed" in record else "") if x)
    return Report("What has the CNN learned? Explanations of this run", subtitle or "output folder " + str(out),
                  sections)
