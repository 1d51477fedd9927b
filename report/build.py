"""Build report.pdf and report.html from an output folder: the last task of a run, or standalone.

    python -m report.build <out_dir>     (reads <out_dir>/run.json for the command, versions and timings)
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):   # `python report/build.py DIR` as well as `python -m report.build DIR`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report.render_html import write_html  # noqa: E402
from report.render_pdf import write_pdf  # noqa: E402
from records import ReportResult  # noqa: E402
from report.opening import EXAMPLES  # noqa: E402
from report.reading import read_json  # noqa: E402
from report.sections import build_report  # noqa: E402

DATA_FILES = ["report.pdf", "confusion_matrix.csv", "predictions.csv", "trust.json", "trust.csv", "run.json"]


def build(out: Path, record: dict, in_run: bool = False) -> list[Path]:
    """Write <out>/report.pdf and <out>/report.html from the folder's files and the run record."""
    out = Path(out)
    report = build_report(out, record, in_run)
    pdf = write_pdf(report, out, out / "report.pdf")
    html = write_html(report, out, out / "report.html", DATA_FILES)
    drawn = [out / EXAMPLES] if any(f.file == EXAMPLES for s in report.sections for f in s.figures) else []
    return drawn + [pdf, html]


def task_report(ctx) -> ReportResult:
    """Write report.pdf and report.html from this run's record and the files it wrote."""
    record = ctx.record(sum(sec for _, sec, _ in ctx.timings))
    files = build(ctx.out, record, in_run=True)
    written = sorted({f for fs in record["files"].values() for f in fs if f.endswith(".png")})
    return ReportResult(files=files, figures=written)


def main(argv: list[str] | None = None) -> int:
    """Standalone: build the report of an existing output folder."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m report.build <out_dir>", file=sys.stderr)
        return 2
    out = Path(args[0])
    if not out.is_dir():
        print(f"error: output folder not found: {out}", file=sys.stderr)
        return 2
    record = read_json(out / "run.json")
    if not isinstance(record, dict):
        print(f"error: {out}/run.json not found or unreadable: the report reads only the files the run recorded",
              file=sys.stderr)
        return 2
    for path in build(out, record):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
