"""report.pdf's figures float: a figure that does not fit the rest of a page waits for the next one while its own
section's text fills the gap, and the next section's heading never passes it."""
from __future__ import annotations

from pathlib import Path

import pypdf
from PIL import Image

from report.parts import Figure, Report, Section
from report.render_pdf import write_pdf


def _figure(path: Path) -> None:
    """A 7 x 5 inch picture (about two thirds of a page at the text width)."""
    Image.new("RGB", (770, 550), (40, 120, 200)).save(path, dpi=(110, 110))


def _pages(pdf: Path) -> list[str]:
    return [p.extract_text() for p in pypdf.PdfReader(pdf).pages]


def test_text_fills_the_page_before_a_figure_that_waits(tmp_path):
    _figure(tmp_path / "big.png")
    filler = "Filler sentence of the opening section. " * 60          # about half a page
    first = Section("One", paragraphs=[filler, filler[: len(filler) // 3]],
                    figures=[Figure("big.png", "Big picture", "Its caption.")],
                    notes=["LATE NOTE of section one."])
    second = Section("Two", paragraphs=["SECOND SECTION text."])
    pdf = write_pdf(Report("T", "s", [first, second]), tmp_path, tmp_path / "r.pdf")
    pages = _pages(pdf)
    assert len(pages) == 2
    assert "LATE NOTE" in pages[0] and "Big picture" not in pages[0]     # the note filled the gap
    assert "Big picture" in pages[1] and "Two" in pages[1]
    assert pages[1].index("Big picture") < pages[1].index("SECOND SECTION")   # the next section waits


def test_a_figure_that_fits_stays_after_its_paragraphs(tmp_path):
    _figure(tmp_path / "big.png")
    first = Section("One", paragraphs=["Short opening."], figures=[Figure("big.png", "Big picture", "Caption.")],
                    notes=["LATE NOTE of section one."])
    pages = _pages(write_pdf(Report("T", "s", [first]), tmp_path, tmp_path / "r.pdf"))
    assert len(pages) == 1
    text = pages[0]
    assert text.index("Short opening") < text.index("Big picture") < text.index("LATE NOTE")
