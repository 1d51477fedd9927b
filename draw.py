"""The one drawing module: figure style, image/heatmap/overlay panels, colour bars, captions, atomic saving.

Every figure is drawn with the Agg backend under a fixed style and saved with fixed metadata, so a rerun
writes byte-identical PNGs. Images are RGB float arrays in [0,1] (HxWx3) or tensors (3xHxW).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

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
           extra_width: float = 0.0) -> tuple[plt.Figure, np.ndarray]:
    """A figure with a 2-D array of axes (always 2-D), fixed style, ticks off."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(cell[0] * ncols + extra_width, cell[1] * nrows + 0.6),
                                 squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=STYLE["figure.titlesize"])
    return fig, axes


def layout(fig: plt.Figure, top: float = 0.45, bottom: float = 0.0) -> None:
    """tight_layout leaving `top`/`bottom` inches free, run twice: multi-line titles are placed by the first draw."""
    h = fig.get_figheight()
    rect = (0, bottom / h, 1, 1 - top / h)
    fig.tight_layout(rect=rect)
    fig.canvas.draw()
    fig.tight_layout(rect=rect)


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Save a figure atomically with fixed metadata (byte-identical reruns), then close it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    meta = {"Software": None} if fmt == "png" else {"CreationDate": None, "Creator": None, "Producer": None}
    with plt.rc_context(STYLE), atomic(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=meta)
    plt.close(fig)
    return path


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
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)


def caption(file: str, class_names: Sequence[str], target: int | None, pred: int | None,
            prob: float | None = None, true: int | None = None) -> str:
    """Panel title: file, true class and predicted class with its probability."""
    def name(c: int | None) -> str:
        return "?" if c is None or c < 0 else (class_names[c] if c < len(class_names) else str(c))
    lines = [file]
    if true is not None and true >= 0:
        lines.append(f"true: {name(true)}")
    if pred is not None and pred >= 0:
        lines.append(f"pred: {name(pred)}" + (f" ({prob:.2f})" if prob is not None else ""))
    if target is not None and target >= 0 and target != true:
        lines.append(f"explains: {name(target)}")
    return "\n".join(lines)


def attribution_grid(images: Any, maps: np.ndarray, captions: Sequence[str], title: str, path: str | Path,
                     signed: bool = False, unit: str = "attribution", per_row_note: Sequence[str] | None = None
                     ) -> Path:
    """Rows = images; columns = original, heatmap (with colour bar, raw units), overlay."""
    n = len(maps)
    fig, axes = figure(n, 3, cell=(2.4, 2.45), title=title, extra_width=0.6)
    for i in range(n):
        show_image(axes[i, 0], images[i], captions[i])
        im = show_map(axes[i, 1], maps[i], signed, title="map" + (f"\n{per_row_note[i]}" if per_row_note else ""))
        colorbar(fig, im, axes[i, 1], unit)
        show_overlay(axes[i, 2], images[i], maps[i], signed, title="overlay")
    layout(fig)
    return save(fig, path)
