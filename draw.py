"""The one drawing module: figure style, image/heatmap/overlay panels, colour bars, captions, atomic saving.

Every figure is drawn with the Agg backend under a fixed style and saved with fixed metadata, so a rerun
writes byte-identical PNGs. Images are RGB float arrays in [0,1] (HxWx3) or tensors (3xHxW).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import matplotlib.layout_engine
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from outputs import atomic  # noqa: E402

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "figure.titlesize": 11,
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "image.interpolation": "nearest",
    "svg.hashsalt": "hw5",
    "path.simplify": False,
}
# Inches a figure may take: the report prints it at A4's text width (7.09 in) and at most about 9.2 in tall, so
# text drawn at 6 pt or more stays at least 6 pt on paper.
PAGE = (7.0, 9.0)
# Fonts with CJK glyphs, tried in this order as DejaVu Sans's fallback; with none installed, readable() escapes them.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "Droid Sans Fallback", "AR PL UMing CN")


def _cjk_font() -> str | None:
    """The first installed font of CJK_FONTS, or None."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in have), None)


CJK_FONT = _cjk_font()
if CJK_FONT:
    STYLE["font.family"] = ["DejaVu Sans", CJK_FONT]


def readable(text: str) -> str:
    """Text as a title can draw it: as given with a CJK font installed, else CJK characters as \\uXXXX escapes."""
    if CJK_FONT:
        return text
    return "".join(c if ord(c) < 0x2E80 else c.encode("unicode_escape").decode() for c in text)


HEAT_CMAP = "inferno"      # unsigned maps (magnitudes)
SIGNED_CMAP = "RdBu_r"     # signed maps: red = evidence for, blue = against


def as_hwc(img: Any) -> np.ndarray:
    """A 3xHxW tensor/array or HxWx3 array as an HxWx3 float array in [0,1]."""
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    return np.clip(img, 0.0, 1.0)


def figure(nrows: int, ncols: int, cell: tuple[float, float] = (2.3, 2.3), title: str | None = None,
           extra_width: float = 0.0, snug: bool = False) -> tuple[plt.Figure, np.ndarray]:
    """A figure with a 2-D array of axes (always 2-D), fixed style, ticks off; the grid shrinks to fit A4 (PAGE).

    snug: images packed with no empty bands between them (matplotlib's compressed layout); save() then crops the
    margins this leaves. Without it, the caller lays the figure out (layout() or subplots_adjust)."""
    width, height = cell[0] * ncols + extra_width, cell[1] * nrows + 0.6
    fit = min(1.0, PAGE[0] / width, (PAGE[1] - 0.6) / (height - 0.6))
    engine = {"layout": matplotlib.layout_engine.ConstrainedLayoutEngine(compress=True, wspace=0.04, hspace=0.02)
              } if snug else {}
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * fit, (height - 0.6) * fit + 0.6), squeeze=False,
                                 **engine)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:   # wrapped to the figure's width (about 12 characters an inch at the title size)
        lines = [textwrap.fill(line, int(12 * fig.get_figwidth())) for line in title.split("\n")]
        fig.suptitle("\n".join(lines), fontsize=STYLE["figure.titlesize"])
    return fig, axes


def blank(height: float) -> plt.Figure:
    """An empty page-wide figure in the house style with constrained layout, for figures built from subfigures."""
    with plt.rc_context(STYLE):
        return plt.figure(figsize=(PAGE[0] - 0.15, height), layout="constrained")   # room for what the crop adds


def item_rows(n: int, k: int, max_cols: int = 6) -> tuple[int, int]:
    """(rows, items per row) for n items of k panels each, side by side up to max_cols panels a row, rows balanced."""
    per = max(1, min(n, max_cols // k))
    rows = -(-n // per)
    return rows, -(-n // rows)


def item_panels(axes: np.ndarray, n: int, k: int, per: int) -> list[np.ndarray]:
    """The k axes of each of n items laid out `per` to a row; the unused axes of the last row are switched off."""
    panels = []
    for i in range(axes.shape[0] * per):
        row, col = divmod(i, per)
        ax = axes[row, k * col:k * col + k]
        if i < n:
            panels.append(ax)
        else:
            for a in ax:
                a.axis("off")
    return panels


def layout(fig: plt.Figure, top: float = 0.45, bottom: float = 0.0) -> None:
    """tight_layout leaving `top`/`bottom` inches free, run twice: multi-line titles are placed by the first draw."""
    h = fig.get_figheight()
    rect = (0, bottom / h, 1, 1 - top / h)
    fig.tight_layout(rect=rect)
    fig.canvas.draw()
    fig.tight_layout(rect=rect)


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Save a figure atomically with fixed metadata (byte-identical reruns), then close it; a figure with
    constrained layout (figure(snug=True), blank()) is cropped to what it draws."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    meta = {"Software": None} if fmt == "png" else {"CreationDate": None, "Creator": None, "Producer": None}
    if fmt == "png":     # the report reads it to print the smallest text at 6 pt or more
        meta["MinFontPt"] = f"{min_font_pt(fig):g}"
    with plt.rc_context(STYLE), atomic(path) as tmp:
        crop = isinstance(fig.get_layout_engine(), matplotlib.layout_engine.ConstrainedLayoutEngine)
        if crop:
            freeze_layout(fig)
        tight = {"bbox_inches": "tight", "pad_inches": 0.05} if crop else {}
        fig.savefig(tmp, format=fmt, metadata=meta, **tight)
    plt.close(fig)
    return path


def freeze_layout(fig: plt.Figure) -> None:
    """Run the constrained layout once, round every axes' position to 1e-4 of the figure and switch the engine off:
    the solver's last-digit float noise varies between processes and would move text by a fraction of a pixel, so
    two runs would not write the same bytes."""
    fig.canvas.draw()
    for ax in fig.get_axes():
        ax.set_position([round(v, 4) for v in ax.get_position(original=True).bounds], which="original")
    fig.set_layout_engine("none")


def min_font_pt(fig: plt.Figure) -> float:
    """The smallest size in points of any visible, non-empty text the figure draws (0 when it has none)."""
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and t.get_window_extent().width > 0]
    return float(min(sizes)) if sizes else 0.0


def show_image(ax: plt.Axes, img: Any, title: str | None = None) -> None:
    """Draw an RGB image."""
    ax.imshow(as_hwc(img), interpolation="bilinear")
    if title:
        ax.set_title(title)


def display_range(m: np.ndarray, signed: bool = False, pct: float = 99.5) -> tuple[float, float]:
    """Colour range for a map: robust (percentile) maximum, symmetric when signed."""
    m = np.asarray(m, dtype=np.float64)
    top = float(np.percentile(np.abs(m) if signed else m, pct)) if m.size else 1.0
    if not np.isfinite(top) or top <= 0:
        top = float(np.abs(m).max()) if m.size and np.abs(m).max() > 0 else 1.0
    if signed:
        return -top, top
    bottom = float(min(m.min(), 0.0)) if m.size else 0.0
    return bottom, top


def normalize(m: np.ndarray, signed: bool = False, pct: float = 99.5) -> np.ndarray:
    """Map to [0,1] ([-1,1] when signed) by the display range, clipped."""
    lo, hi = display_range(m, signed, pct)
    if signed:
        return np.clip(m / hi, -1, 1)
    return np.clip((m - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def show_map(ax: plt.Axes, m: np.ndarray, signed: bool = False, title: str | None = None,
             vrange: tuple[float, float] | None = None, cmap: str | None = None) -> matplotlib.image.AxesImage:
    """Draw a heatmap in its raw units (colour range robust to outliers); returns the image for a colour bar."""
    lo, hi = vrange or display_range(m, signed)
    im = ax.imshow(m, cmap=cmap or (SIGNED_CMAP if signed else HEAT_CMAP), vmin=lo, vmax=hi)
    if title:
        ax.set_title(title)
    return im


def show_overlay(ax: plt.Axes, img: Any, m: np.ndarray, signed: bool = False, title: str | None = None,
                 alpha: float = 0.55, vrange: tuple[float, float] | None = None) -> matplotlib.image.AxesImage:
    """Draw a heatmap over a dimmed grayscale copy of the image, so both stay readable."""
    rgb = as_hwc(img)
    gray = rgb.mean(axis=2, keepdims=True).repeat(3, axis=2)
    ax.imshow(0.35 + 0.5 * gray, interpolation="bilinear")
    lo, hi = vrange or display_range(m, signed)
    if signed:
        a = np.clip(np.abs(m) / (hi or 1.0), 0, 1) * alpha
    else:
        a = np.clip((m - lo) / ((hi - lo) or 1.0), 0, 1) * alpha + 0.15 * (m > lo)
    im = ax.imshow(m, cmap=SIGNED_CMAP if signed else HEAT_CMAP, vmin=lo, vmax=hi,
                   alpha=np.clip(a, 0, 1).astype(np.float32), interpolation="bilinear")
    if title:
        ax.set_title(title)
    return im


def colorbar(fig: plt.Figure, im: matplotlib.image.AxesImage, ax: Any, label: str) -> None:
    """A slim colour bar with a label (ax may be one axes or a list to share)."""
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, format=matplotlib.ticker.FuncFormatter(tick_text))
    cb.locator = matplotlib.ticker.MaxNLocator(4)
    cb.update_ticks()
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)


def colorbar_in(ax: plt.Axes, im: matplotlib.image.AxesImage, label: str) -> None:
    """A horizontal colour bar with its label inside an otherwise empty axes (a spare cell of a grid)."""
    ax.axis("off")
    cax = ax.inset_axes((0.05, 0.55, 0.9, 0.12))
    cb = ax.figure.colorbar(im, cax=cax, orientation="horizontal", format=matplotlib.ticker.FuncFormatter(tick_text))
    cb.locator = matplotlib.ticker.MaxNLocator(3)
    cb.update_ticks()
    cb.set_label(label, fontsize=6.5)
    cb.ax.tick_params(labelsize=6)


def tick_text(value: float, _pos: Any = None) -> str:
    """A colour-bar tick with its own exponent ('2e-05'), so no shared scale factor floats over the panel."""
    return "0" if value == 0 else f"{value:.2g}"


def caption(file: str, class_names: Sequence[str], target: int | None, pred: int | None,
            prob: float | None = None, true: int | None = None) -> str:
    """Panel title: file, true class ("?" when unknown, -1) and predicted class with its probability."""
    def name(c: int | None) -> str:
        return "?" if c is None or c < 0 else readable(class_names[c] if c < len(class_names) else str(c))
    lines = [readable(file)]
    if true is not None:
        lines.append(f"true: {name(true)}")
    if pred is not None and pred >= 0:
        lines.append(f"pred: {name(pred)}" + (f" ({prob:.2f})" if prob is not None else ""))
    if target is not None and target >= 0 and target != true:
        lines.append(f"explains: {name(target)}")
    return "\n".join(lines)


def attribution_grid(images: Any, maps: np.ndarray, captions: Sequence[str], title: str, path: str | Path,
                     signed: bool = False, unit: str = "attribution", per_row_note: Sequence[str] | None = None
                     ) -> Path:
    """Per image: original, heatmap (with colour bar, raw units) and overlay; two images side by side per row."""
    n = len(maps)
    rows, per = item_rows(n, 3)
    fig, axes = figure(rows, 3 * per, cell=(1.15, 1.55 + 0.1 * title.count("\n")),
                       title=f"{title}\ncolour bars: {unit}; columns: image, map, overlay")
    h = fig.get_figheight()
    head = 0.3 + 0.19 * (fig.get_suptitle().count("\n") + 1)      # inches for the title and the first captions
    fig.subplots_adjust(left=0.06, right=0.97, bottom=(0.4 if per_row_note else 0.08) / h, top=1 - (head + 0.45) / h,
                        wspace=0.3, hspace=0.8)
    for k, ax in enumerate(item_panels(axes, n, 3, per)):
        show_image(ax[0], images[k], captions[k])
        im = show_map(ax[1], maps[k], signed)       # untitled, so the image's caption may reach over it
        if per_row_note:
            ax[1].set_xlabel(per_row_note[k].replace(", ", "\n"), fontsize=7, labelpad=2)
        colorbar(fig, im, ax[1], "")
        show_overlay(ax[2], images[k], maps[k], signed, title="overlay")
    for a in axes.flat:
        a.title.set_fontsize(7)
    return save(fig, path)
