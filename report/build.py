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
from report.sections import build_report, read_json  # noqa: E402

DATA_FILES = ["report.pdf", "confusion_matrix.csv", "predictions.csv", "trust.json", "trust.csv", "run.json"]


def build(out: Path, record: dict, in_run: bool = False) -> list[Path]:
    """Write <out>/report.pdf and <out>/report.html from the folder's files and the run record."""
    out = Path(out)
    report = build_report(out, record, in_run)
    pdf = write_pdf(report, out, out / "report.pdf")
    html = write_html(report, out, out / "report.html", DATA_FILES)
    return [pdf, html]


def run_record_so_far(ctx) -> dict:
    """run.json's content as it stands now (main.py writes the file only after the last task)."""
    import main

    rows = list(ctx.cache.get("timings", []))
    return main.run_record(ctx.args, ctx, rows, sum(sec for _, sec, _ in rows))


def task_report(ctx) -> list[Path]:
    """Write report.pdf and report.html from this run's output folder and record."""
    return build(ctx.out, run_record_so_far(ctx), in_run=True)


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
    if record is None:
        print(f"note: {out}/run.json not found: the appendix will be short", file=sys.stderr)
    for path in build(out, record if isinstance(record, dict) else {}):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
