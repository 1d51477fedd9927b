"""report.pdf's text prints every character: one the font cannot draw (a CJK class name) is written as an escape
that a reader can look up, never as an empty box."""
from __future__ import annotations

import pypdf

from report.parts import Report, Section
from report.render_pdf import write_pdf


def test_cjk_names_print_as_escapes_not_boxes(tmp_path):
    section = Section("0. The data", paragraphs=["Class 麵食 (Noodles), café."])
    pdf = write_pdf(Report("T", "s", [section]), tmp_path, tmp_path / "r.pdf")
    text = pypdf.PdfReader(pdf).pages[0].extract_text()
    assert "\\u9eb5\\u98df" in text and "café" in text
