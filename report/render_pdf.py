"""report.pdf with matplotlib's PDF backend: A4 pages of wrapped text, monospace tables and the run's PNGs."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

import draw  # noqa: E402
from outputs import atomic  # noqa: E402
from report.parts import Report, Table  # noqa: E402
from report.references import REFERENCES  # noqa: E402

PAGE = (8.27, 11.69)            # A4 portrait, inches
MARGIN = 0.6
STYLE = {"pdf.fonttype": 42, "font.family": "DejaVu Sans", "pdf.compression": 6}
# Fixed metadata (no dates, no versions): the same folder gives the same bytes.
METADATA = {"Title": "HW5 explanation report", "Creator": "hw5 report/render_pdf.py", "Producer": "matplotlib pdf backend",
            "CreationDate": None}
BODY_PT, MONO_PT = 9.0, 6.8
BODY_CHARS, MONO_CHARS = 108, 124   # characters per line that fit the text width at those sizes
MIN_SHOWN = 0.35     # a figure shown below this share of its drawn size is split over pages (tall figures)
SHRINK = 0.6         # a figure may shrink to this share of its fitted size to finish the current page
SECTION_ROOM = 3.0   # inches a section needs left on the page to start there
PRINT_DPI = 150      # figures are embedded at this resolution of their printed size (zoom in to read small text)
MAX_HEIGHT = 0.47    # a figure that fits one page takes at most this share of the page height: two per page
JPEG_QUALITY = 85    # figures are stored as JPEG: the demo's 21 figures take 9.4 MB as Flate, about 2.5 MB as JPEG


def _line_h(pt: float) -> float:
    """Line height in inches for a font size."""
    return pt * 1.38 / 72


class Pager:
    """A cursor that fills A4 pages top to bottom and starts a new page when the next item does not fit."""

    def __init__(self, pdf: PdfPages):
        self.pdf, self.fig, self.y, self.page = pdf, None, 0.0, 0

    def new_page(self) -> None:
        """Finish the current page and start a fresh one."""
        self.close()
        self.fig = plt.figure(figsize=PAGE)
        self.page += 1
        self.fig.text(0.5, 0.35 / PAGE[1], f"{self.page}", ha="center", va="center", fontsize=7, color="0.4")
        self.y = PAGE[1] - MARGIN

    def close(self) -> None:
        """Write the current page, if any."""
        if self.fig is not None:
            self.pdf.savefig(self.fig)
            plt.close(self.fig)
            self.fig = None

    def room(self) -> float:
        """Inches left above the bottom margin."""
        return self.y - MARGIN

    def text(self, text: str, pt: float = BODY_PT, weight: str = "normal", chars: int = BODY_CHARS,
             family: str | None = None, gap: float = 0.06, color: str = "black", indent: float = 0.0) -> None:
        """Wrapped lines of text, breaking pages between lines."""
        lines = textwrap.wrap(text, chars, break_long_words=True, break_on_hyphens=False) or [""]
        for line in lines:
            self.line(line, pt, weight, family, color, indent)
        self.y -= gap

    def line(self, line: str, pt: float, weight: str = "normal", family: str | None = None, color: str = "black",
             indent: float = 0.0) -> None:
        """One unwrapped line."""
        if self.fig is None or self.room() < _line_h(pt):
            self.new_page()
        self.fig.text((MARGIN + indent) / PAGE[0], self.y / PAGE[1], line, fontsize=pt, weight=weight,
                      family=family or "DejaVu Sans", color=color, va="top", ha="left")
        self.y -= _line_h(pt)

    def table(self, table: Table) -> None:
        """A monospace table; the last column wraps, earlier ones are cut to fit."""
        if table.title:
            self.text(table.title, pt=BODY_PT, weight="bold", gap=0.02)
        for line in table_lines(table, MONO_CHARS):
            self.line(line, MONO_PT, family="DejaVu Sans Mono")
        self.y -= 0.1

    def image(self, path: Path, title: str, caption: str) -> None:
        """A PNG scaled to the text width (or the page height), title above and caption below; a very tall one
        is cut at background rows into bands over several pages, so it keeps a readable size. The pixels are
        resampled once to PRINT_DPI at their printed size and each band is embedded once (disjoint slices)."""
        img = print_pixels(path)
        h, w = img.shape[:2]
        width = PAGE[0] - 2 * MARGIN
        cap_lines = textwrap.wrap(caption, BODY_CHARS + 6) or [""]
        title_h, cap_h = _line_h(BODY_PT + 1) + 0.05, len(cap_lines) * _line_h(BODY_PT - 0.5) + 0.2
        page_h = PAGE[1] - 2 * MARGIN - 0.1
        fit = min(width / w, (MAX_HEIGHT * page_h - title_h - cap_h) / h)
        readable = MIN_SHOWN / draw.STYLE["savefig.dpi"]    # inches per pixel at MIN_SHOWN of the PNG's size
        if fit < min(readable, width / w):     # too small on one page: bands over several pages instead
            scale = min(readable, width / w)
            tall = True
        else:
            scale, tall = fit, False
        if self.fig is not None and not tall:      # shrink into the rest of this page rather than leave it empty
            room = self.room() - title_h - cap_h - 0.12
            if room >= h * scale * SHRINK:
                scale = min(scale, room / h)
        img, scale = resample(img, scale)
        h = img.shape[0]
        parts = bands(img, int((page_h - title_h) / scale), int((page_h - title_h - cap_h) / scale)) if tall else [img]
        for k, part in enumerate(parts):
            last = k == len(parts) - 1
            need = title_h + part.shape[0] * scale + (cap_h if last else 0)
            if self.fig is None or self.room() < need - 0.01:
                self.new_page()
            self.line(title + (" (continued)" if k else ""), BODY_PT + 1, weight="bold")
            dw, dh = part.shape[1] * scale, part.shape[0] * scale
            left = MARGIN + (width - dw) / 2
            ax = self.fig.add_axes((left / PAGE[0], (self.y - dh - 0.05) / PAGE[1], dw / PAGE[0], dh / PAGE[1]))
            ax.imshow(part, interpolation="none")
            ax.set_axis_off()
            self.y -= dh + 0.12
        for line in cap_lines:
            self.line(line, BODY_PT - 0.5, color="0.2")
        self.y -= 0.15


def print_pixels(path: Path) -> np.ndarray:
    """A PNG as H x W x 3 uint8 RGB, transparency flattened onto white."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
            flat.alpha_composite(im)
            im = flat
        return np.asarray(im.convert("RGB"))


def resample(img: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """Pixels resampled (Lanczos) to PRINT_DPI at `scale` inches per pixel, never up; the new inches per pixel."""
    h, w = img.shape[:2]
    tw = min(w, max(1, round(w * scale * PRINT_DPI)))
    if tw == w:
        return img, scale
    th = max(1, round(h * tw / w))
    out = np.asarray(Image.fromarray(img).resize((tw, th), Image.Resampling.LANCZOS))
    return out, scale * w / tw


def bands(img: np.ndarray, max_h: int, last_h: int) -> list[np.ndarray]:
    """Cut an image into horizontal bands of at most max_h rows (the last at most last_h), preferring to cut
    at rows of plain background (the gaps between a figure's rows of panels)."""
    h = img.shape[0]
    rgb = img[..., :3] if img.ndim == 3 else img[..., None]
    if rgb.dtype == np.uint8:
        rgb = rgb.astype(np.float32) / 255.0
    plain = (np.abs(rgb - rgb[:, :1]).max(axis=(1, 2)) < 0.02)   # every pixel equals the row's first one
    cuts = [0]
    while h - cuts[-1] > last_h:
        lo, hi = cuts[-1] + max_h // 2, min(cuts[-1] + max_h, h)
        found = np.flatnonzero(plain[lo:hi])
        cuts.append(lo + int(found[-1]) if len(found) else hi)
    return [img[a:b] for a, b in zip(cuts, cuts[1:] + [h]) if b > a]


def table_lines(table: Table, chars: int) -> list[str]:
    """Fixed-width text lines of a table that fit `chars` characters."""
    cols = [table.header] + table.rows
    n = len(table.header)
    widths = [max(len(str(r[i])) if i < len(r) else 0 for r in cols) for i in range(n)]
    for i in range(n - 1):          # earlier columns get at most 40 characters
        widths[i] = min(widths[i], 40)
    widths[-1] = max(8, min(widths[-1], chars - sum(widths[:-1]) - 2 * (n - 1)))

    def cells(row: list[str]) -> list[str]:
        out, last = [], textwrap.wrap(str(row[-1]), widths[-1]) or [""]
        for k, part in enumerate(last):
            head = [(str(c) if k == 0 else "") for c in row[:-1]]
            head = [c if len(c) <= widths[i] else c[:widths[i] - 1] + "~" for i, c in enumerate(head)]
            out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(head + [part])).rstrip())
        return out

    lines = cells(table.header)
    lines.append("  ".join("-" * w for w in widths))
    for row in table.rows:
        lines.extend(cells(list(row) + [""] * (n - len(row))))
    return lines


def write_pdf(report: Report, out: Path, path: Path) -> Path:
    """Render the report: sections flow on (a new page when little room is left); figures follow their text."""
    with plt.rc_context(STYLE), atomic(path) as tmp:
        with PdfPages(tmp, metadata=METADATA) as pdf:
            pager = Pager(pdf)
            pager.new_page()
            pager.text(report.title, pt=15, weight="bold", chars=70)
            pager.text(report.subtitle, pt=BODY_PT, color="0.3", gap=0.2)
            for k, section in enumerate(report.sections):
                if k and pager.room() < SECTION_ROOM:   # sections flow on; a new page only near the bottom
                    pager.new_page()
                elif k:
                    pager.y -= 0.25
                pager.text(section.title, pt=12.5, weight="bold", chars=70, gap=0.1)
                for para in section.paragraphs:
                    pager.text(para, gap=0.1)
                for note in section.notes:
                    pager.text("Note: " + note, pt=BODY_PT - 0.5, color="0.35", gap=0.03)
                if section.notes:
                    pager.y -= 0.08
                for table in section.tables:
                    pager.table(table)
                if section.refs:
                    pager.text("References", weight="bold", gap=0.02)
                    for key in section.refs:
                        pager.text(REFERENCES[key], pt=BODY_PT - 1, chars=BODY_CHARS + 8, gap=0.02, indent=0.15)
                    pager.y -= 0.1
                for fig in section.figures:
                    pager.image(out / fig.file, f"{fig.title} ({fig.file})", fig.caption)
            pager.close()
        jpeg_images(tmp)
    return path


def jpeg_images(path: Path) -> None:
    """Re-encode every embedded figure as JPEG, once per image object (matplotlib lists each on every page)."""
    import io

    import pypdf
    from pypdf.generic import NameObject, NumberObject, StreamObject

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(path))
    done: set[int] = set()
    for page in writer.pages:
        for ref in (page["/Resources"].get("/XObject") or {}).values():
            obj = ref.get_object()
            if ref.idnum in done or obj.get("/Subtype") != "/Image" or "/SMask" in obj:
                continue
            done.add(ref.idnum)
            pixels = obj.decode_as_image().convert("RGB")   # matplotlib stores few-colour figures as palettes
            buf = io.BytesIO()
            pixels.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False)
            # The stream's bytes are the JPEG file itself: StreamObject.set_data stores them as they are, where the
            # Flate stream's own set_data would compress them again under a /DCTDecode label (blank in viewers).
            obj[NameObject("/Filter")] = NameObject("/DCTDecode")
            for key in ("/DecodeParms", "/Predictor"):
                obj.pop(key, None)
            StreamObject.set_data(obj, buf.getvalue())
            obj.decoded_self = None
            obj[NameObject("/ColorSpace")] = NameObject("/DeviceRGB")
            obj[NameObject("/BitsPerComponent")] = NumberObject(8)
    with open(path, "wb") as f:
        writer.write(f)
