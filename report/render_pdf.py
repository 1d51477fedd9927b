"""report.pdf with ReportLab's platypus: flowing text, wrapping tables, each figure once as JPEG with its caption."""
from __future__ import annotations

import io
from html import escape as html_escape
from pathlib import Path

import matplotlib
from PIL import Image
from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table as RLTable, TableStyle

from outputs import atomic
from report.parts import Figure, Report, Section, Table
from report.references import REFERENCES

MARGIN = 15 * mm
TEXT_W = A4[0] - 2 * MARGIN          # points; every figure is placed at this width unless it must shrink
FRAME_H = A4[1] - 2 * MARGIN
PRINT_DPI = 150                      # figures are embedded at this resolution of their printed size
JPEG_QUALITY = 85
MIN_FONT_PT = 6.0                    # a figure never shrinks below the scale that prints its smallest text at this
BODY_PT, SMALL_PT = 9.0, 7.5
TITLE = "HW5 explanation report"


def _fonts() -> tuple[str, str]:
    """DejaVu Sans (matplotlib's own font, so every machine has it) registered for the PDF: regular and bold."""
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in (("DejaVu", "DejaVuSans.ttf"), ("DejaVu-Bold", "DejaVuSans-Bold.ttf")):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    return "DejaVu", "DejaVu-Bold"


def escape(text: str) -> str:
    """Text for a paragraph: XML-escaped, and every character DejaVu Sans has no glyph for (CJK class or file
    names) written as a \\uXXXX escape, as the figures do without a CJK font, instead of an empty box."""
    cmap = pdfmetrics.getFont(_fonts()[0]).face.charToGlyph
    return html_escape("".join(c if ord(c) in cmap or c in "\n\t" else c.encode("unicode_escape").decode()
                               for c in text))


def _styles() -> dict[str, ParagraphStyle]:
    """The paragraph styles: title, subtitle, section heading, body, note, caption, figure title, table cell."""
    reg, bold = _fonts()
    base = ParagraphStyle("body", fontName=reg, fontSize=BODY_PT, leading=BODY_PT * 1.3, spaceAfter=4)
    return {
        "title": ParagraphStyle("title", base, fontName=bold, fontSize=15, leading=19, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", base, textColor=colors.Color(0.3, 0.3, 0.3), spaceAfter=10),
        "h1": ParagraphStyle("h1", base, fontName=bold, fontSize=12.5, leading=16, spaceBefore=10, spaceAfter=5,
                             keepWithNext=1),
        "body": base,
        "note": ParagraphStyle("note", base, fontSize=SMALL_PT + 0.5, leading=10,
                               textColor=colors.Color(.35, .35, .35)),
        "ref": ParagraphStyle("ref", base, fontSize=SMALL_PT, leading=9.5, leftIndent=8, spaceAfter=1),
        "figtitle": ParagraphStyle("figtitle", base, fontName=bold, fontSize=BODY_PT + 0.5, spaceAfter=2),
        "caption": ParagraphStyle("caption", base, fontSize=SMALL_PT + 0.5, leading=10.5,
                                  textColor=colors.Color(0.2, 0.2, 0.2), spaceAfter=0),
        "cell": ParagraphStyle("cell", base, fontSize=SMALL_PT, leading=9, spaceAfter=0),
        "head": ParagraphStyle("head", base, fontName=bold, fontSize=SMALL_PT, leading=9, spaceAfter=0),
        "tabletitle": ParagraphStyle("tabletitle", base, fontName=bold, spaceBefore=4, spaceAfter=2, keepWithNext=1),
    }


def figure_inches(path: Path) -> tuple[float, float, float]:
    """(width, height) in inches the figure was drawn at, and its smallest text size in points (0 when unknown)."""
    with Image.open(path) as im:
        dpi = im.info.get("dpi", (110, 110))[0] or 110
        return im.width / dpi, im.height / dpi, float(im.info.get("MinFontPt", 0) or 0)


def placed_width(path: Path, avail_h: float = FRAME_H - 90) -> float:
    """Points wide the report prints a figure at: the text width, less only when the figure is taller than avail_h."""
    w, h, _ = figure_inches(path)
    return min(TEXT_W, avail_h * w / h)


def jpeg(path: Path, width_pt: float) -> ImageReader:
    """The PNG flattened onto white, resampled (never up) to PRINT_DPI at width_pt, as JPEG bytes for the PDF."""
    with Image.open(path) as im:
        im.load()
        rgba = im.convert("RGBA")
    flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat.alpha_composite(rgba)
    rgb = flat.convert("RGB")
    tw = min(rgb.width, round(width_pt / 72 * PRINT_DPI))
    if tw < rgb.width:
        rgb = rgb.resize((tw, max(1, round(rgb.height * tw / rgb.width))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    buf.seek(0)
    return ImageReader(buf)


class FigureBlock(Flowable):
    """A figure's title, picture and caption, never split; shrinks to fit a page's rest down to 6-pt text."""

    def __init__(self, path: Path, title: str, caption: str, styles: dict[str, ParagraphStyle]):
        super().__init__()
        self.title = Paragraph(escape(title), styles["figtitle"])
        self.caption = Paragraph(escape(caption), styles["caption"])
        w_in, h_in, font = figure_inches(path)
        self.aspect = h_in / w_in
        self.full_w = placed_width(path)
        self.min_w = max(self.full_w * 0.6, w_in * 72 * MIN_FONT_PT / font if font else self.full_w)
        self.image = jpeg(path, self.full_w)
        self.img_w = self.full_w

    def _text_h(self, avail_w: float) -> float:
        """Height of title and caption at this width."""
        return self.title.wrap(avail_w, FRAME_H)[1] + 4 + self.caption.wrap(avail_w, FRAME_H)[1] + 10

    def wrap(self, avail_w: float, avail_h: float) -> tuple[float, float]:
        """Full size, or shrunk into avail_h when the text stays readable."""
        text = self._text_h(avail_w)
        self.img_w = self.full_w
        if text + self.full_w * self.aspect > avail_h:
            fit = (avail_h - text) / self.aspect
            if fit >= self.min_w:
                self.img_w = fit
        self.height = text + self.img_w * self.aspect
        self.width = avail_w
        return avail_w, self.height

    def split(self, avail_w: float, avail_h: float) -> list:
        """A figure is never split over pages."""
        return []

    def draw(self) -> None:
        """Title, centred picture, caption, top to bottom."""
        y = self.height
        _, th = self.title.wrap(self.width, FRAME_H)
        y -= th
        self.title.drawOn(self.canv, 0, y)
        ih = self.img_w * self.aspect
        y -= ih + 2
        self.canv.drawImage(self.image, (self.width - self.img_w) / 2, y, self.img_w, ih)
        _, ch = self.caption.wrap(self.width, FRAME_H)
        y -= ch + 4
        self.caption.drawOn(self.canv, 0, y)


class FigureRun(Flowable):
    """A section's figures, packed first-fit: a figure too tall for the rest of a page waits while a later one that
    fits is placed, so pages do not end half empty."""

    def __init__(self, blocks: list[FigureBlock]):
        super().__init__()
        self.blocks = blocks

    def wrap(self, avail_w: float, avail_h: float) -> tuple[float, float]:
        """The height of every figure stacked at full size."""
        self.width = avail_w
        self.height = sum(b.wrap(avail_w, FRAME_H)[1] for b in self.blocks)
        return avail_w, self.height

    def split(self, avail_w: float, avail_h: float) -> list:
        """The figures that fit the rest of this page, in order, then a run of the others."""
        placed, rest, left = [], [], avail_h
        for b in self.blocks:
            h = b.wrap(avail_w, left)[1]
            if h <= left:
                placed.append(b)
                left -= h
            else:
                rest.append(b)
        return placed + [FigureRun(rest)] if placed and rest else placed

    def draw(self) -> None:
        """Every figure, top to bottom (the run fits where it stands)."""
        y = self.height
        for b in self.blocks:
            _, h = b.wrap(self.width, FRAME_H)
            y -= h
            b.drawOn(self.canv, 0, y)


def table_flowables(table: Table, styles: dict[str, ParagraphStyle]) -> list:
    """A titled table whose cells wrap; column widths follow the longest cell of each column."""
    n = len(table.header)
    rows = [list(r) + [""] * (n - len(r)) for r in table.rows]
    longest = [max([len(str(table.header[i]))] + [len(str(r[i])) for r in rows]) for i in range(n)]
    words = [max(len(w) for w in str(h).split() or [""]) + 2 for h in table.header]   # a header word never breaks
    weights = [min(max(k, w, 4), 48) for k, w in zip(longest, words)]
    widths = [TEXT_W * w / sum(weights) for w in weights]
    data = [[Paragraph(escape(str(h)), styles["head"]) for h in table.header]]
    data += [[Paragraph(escape(str(c)), styles["cell"]) for c in r] for r in rows]
    t = RLTable(data, colWidths=widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.3, colors.Color(0.8, 0.8, 0.8)),
                           ("BACKGROUND", (0, 0), (-1, 0), colors.Color(0.94, 0.94, 0.94)),
                           ("VALIGN", (0, 0), (-1, -1), "TOP"), ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                           ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]))
    head = [Paragraph(escape(table.title), styles["tabletitle"])] if table.title else []
    return head + [t, Spacer(1, 6)]


def section_flowables(section: Section, out: Path, styles: dict[str, ParagraphStyle]) -> list:
    """A section: heading, paragraphs, its figures (which later text may pass, see FloatingDoc), notes, tables,
    references."""
    items: list = [Paragraph(escape(section.title), styles["h1"])]
    items += [Paragraph(escape(p), styles["body"]) for p in section.paragraphs]
    if section.figures:   # the section's later notes, tables and references may pass figures that wait for a page
        items.append(FigureRun([figure_block(fig, out, styles) for fig in section.figures]))
    items += [Paragraph("Note: " + escape(n), styles["note"]) for n in section.notes]
    for table in section.tables:
        items += table_flowables(table, styles)
    if section.refs:
        items.append(Paragraph("References", styles["tabletitle"]))
        items += [Paragraph(escape(REFERENCES[k]), styles["ref"]) for k in section.refs]
    return items


def figure_block(fig: Figure, out: Path, styles: dict[str, ParagraphStyle]) -> FigureBlock:
    """The flowable of one figure of the output folder."""
    return FigureBlock(out / fig.file, f"{fig.title} ({fig.file})", fig.caption, styles)


def _passes_figures(f: Flowable) -> bool:
    """Text of the same section, which may be set before figures that wait for the next page (not a heading)."""
    return isinstance(f, (Paragraph, RLTable, Spacer)) and getattr(getattr(f, "style", None), "name", "") != "h1"


class FloatingDoc(SimpleDocTemplate):
    """A document whose figures float as in LaTeX: when none of a section's waiting figures fits the rest of a page,
    the section's following text fills it first, and the figures go on the next page."""

    def filterFlowables(self, flowables: list) -> None:
        """Move the section's next text (with what it keeps with) ahead of figures that cannot start here."""
        f = flowables[0] if flowables else None
        frame = getattr(self, "frame", None)
        if not isinstance(f, FigureRun) or frame is None or frame._atTop or len(flowables) < 2:
            return
        if not _passes_figures(flowables[1]) or f.split(frame._getAvailableWidth(), frame._y - frame._y1p):
            return
        end = 2
        while flowables[end - 1].getKeepWithNext() and end < len(flowables) \
                and _passes_figures(flowables[end]):
            end += 1
        flowables[0:end] = flowables[1:end] + [f]


def _page_number(canvas, doc) -> None:
    """The page number at the foot of every page."""
    canvas.setFont(_fonts()[0], 7)
    canvas.setFillColor(colors.Color(0.4, 0.4, 0.4))
    canvas.drawCentredString(A4[0] / 2, MARGIN / 2, str(doc.page))


def write_pdf(report: Report, out: Path, path: Path) -> Path:
    """Render the report; `invariant` fixes the creation date and document id, so a rebuild writes the same bytes."""
    styles = _styles()
    story: list = [Paragraph(escape(report.title), styles["title"]),
                   Paragraph(escape(report.subtitle), styles["subtitle"])]
    for section in report.sections:
        story += section_flowables(section, out, styles)
    a85 = rl_config.useA85
    rl_config.useA85 = 0                # JPEG streams stored as they are, not ASCII85-wrapped
    try:
        with atomic(path) as tmp:
            doc = FloatingDoc(str(tmp), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                              bottomMargin=MARGIN, title=TITLE, author="", subject="", creator="hw5 report",
                              producer="ReportLab", invariant=1, pageCompression=1)
            doc.build(story, onFirstPage=_page_number, onLaterPages=_page_number)
    finally:
        rl_config.useA85 = a85
    return path
