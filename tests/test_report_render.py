"""report.pdf as a reader sees it, on the demo run: PDFium renders every page, every figure of the run shows on a page,
no page but a section's last is more than half empty, every figure's text prints at 6 pt or more, and a rebuild
writes the same bytes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
import pytest
from PIL import Image

from report import build
from report.render_pdf import MARGIN, figure_inches
from report.sections import build_report

SCALE = 1.0            # render at 72 dpi: coarse enough to be quick, fine enough to compare figures
COARSE = (48, 48)      # a figure and its page region are compared at this size


def grey(img: Image.Image) -> np.ndarray:
    """An image flattened onto white, as grey levels at COARSE size."""
    rgba = img.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    return np.asarray(flat.convert("L").resize(COARSE, Image.Resampling.BOX), np.float64)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-size arrays (0 when either is flat)."""
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


@pytest.fixture(scope="module")
def rendered(pipeline_run) -> dict:
    """Every page of the demo's report.pdf: its pixels, its text and its images' boxes (points, PDF coordinates)."""
    pdf = pdfium.PdfDocument(pipeline_run / "report.pdf")
    pages = []
    for page in pdf:
        boxes = [o.get_bounds() for o in page.get_objects(filter=[pdfium_raw.FPDF_PAGEOBJ_IMAGE])]
        text = page.get_textpage().get_text_range()
        pages.append({"pixels": page.render(scale=SCALE).to_pil().convert("RGB"), "size": page.get_size(),
                      "boxes": boxes, "text": text})
    return {"out": pipeline_run, "pages": pages}


def find(png: Path, pages: list[dict]) -> tuple[float, float]:
    """The best correlation of the PNG with any image region of any page, and that region's width in points."""
    want = grey(Image.open(png))
    best = (-1.0, 0.0)
    for page in pages:
        h = page["size"][1]
        for left, bottom, right, top in page["boxes"]:
            crop = page["pixels"].crop((round(left * SCALE), round((h - top) * SCALE), round(right * SCALE),
                                        round((h - bottom) * SCALE)))
            best = max(best, (correlation(grey(crop), want), right - left))
    return best


def run_pngs(out: Path) -> list[str]:
    """Every PNG the run record lists."""
    record = json.loads((out / "run.json").read_text())
    return sorted({f for fs in record["files"].values() for f in fs if f.endswith(".png")})


def test_every_figure_shows_on_a_page_with_readable_text(rendered):
    out, pages = rendered["out"], rendered["pages"]
    pngs = run_pngs(out)
    assert len(pngs) >= 18
    small = []
    for name in pngs:
        corr, width_pt = find(out / name, pages)
        assert corr >= 0.9, f"{name} is not visible on any page (best correlation {corr:.2f})"
        w_in, _, font = figure_inches(out / name)
        assert font > 0, f"{name} carries no MinFontPt (not saved by draw.save)"
        printed = font * width_pt / 72 / w_in
        if printed < 6 - 1e-3:
            small.append(f"{name}: {printed:.1f} pt")
    assert not small, f"figure text below 6 pt as printed: {small}"


def test_no_page_is_half_empty_but_a_sections_last(rendered):
    out, pages = rendered["out"], rendered["pages"]
    titles = [s.title for s in build_report(out, json.loads((out / "run.json").read_text())).sections]

    def first_line(text: str) -> str:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().isdigit()]
        return lines[0] if lines else ""

    empty = []
    for k, page in enumerate(pages[:-1]):
        if any(t.startswith(first_line(pages[k + 1]["text"])[:25]) for t in titles):
            continue            # the next page opens a section: this is a section's last page
        h = page["size"][1]
        rows = np.asarray(page["pixels"].convert("L"))[round(MARGIN * SCALE):round((h - MARGIN) * SCALE)]
        inked = np.flatnonzero((rows < 200).any(axis=1))
        share = 1 - (inked[-1] + 1) / len(rows) if len(inked) else 1.0
        if share > 0.5:
            empty.append(f"page {k + 1}: {share:.0%} empty")
    assert not empty, empty


def test_rebuild_writes_the_same_pdf(pipeline_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(pipeline_run, out)
    assert build.main([str(out)]) == 0
    first = (out / "report.pdf").read_bytes()
    assert build.main([str(out)]) == 0
    assert (out / "report.pdf").read_bytes() == first



def test_no_machine_paths_or_clock_times_in_the_pdf(rendered):
    text = " ".join(page["text"] for page in rendered["pages"])
    record = json.loads((rendered["out"] / "run.json").read_text())
    assert "/tmp/" not in text and str(Path(record["data"]).parent) not in text
    assert "seconds" not in text and "wall time" not in text
