"""The report: report.pdf and report.html written from one output folder (see report/build.py)."""
