"""The embedded demo: a deterministic synthetic dataset in the Food-11 layout, with ground-truth masks.

Each image holds one class-defining object (a shape, colour and texture per class, at a random position,
scale and rotation, 6-22% of the image) on clutter that every class shares: smooth noise, a colour
gradient and distractor shapes. Nothing outside the object carries label information, so the object's
mask says where the evidence is.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dataset import CLASS_NAMES

REPO = Path(__file__).resolve().parent
DEMO_DIR = REPO / ".cache" / "demo-food11"
DEMO_CHECKPOINT = REPO / "checkpoints" / "demo_hw3_w025.pt"
GENERATOR_VERSION = "1"
SEED = 20261127

# Per class: (polygon kind, base RGB, texture). Colours and shapes differ between every pair of classes.
CLASS_STYLE = [
    ("circle", (196, 140, 72), "speckle"),       # Bread
    ("square", (236, 236, 222), "smooth"),       # Dairy product
    ("triangle", (232, 100, 170), "stripes"),    # Dessert
    ("ellipse", (250, 214, 40), "rings"),        # Egg
    ("star", (236, 120, 20), "dots"),            # Fried food
    ("hexagon", (150, 30, 40), "stripes"),       # Meat
    ("ring", (240, 230, 140), "waves"),          # Noodles/Pasta
    ("diamond", (250, 250, 250), "dots"),        # Rice
    ("cross", (250, 128, 114), "checker"),       # Seafood
    ("halfdisc", (120, 70, 30), "smooth"),       # Soup
    ("leaf", (40, 170, 50), "checker"),          # Vegetable/Fruit
]
COUNTS = {"training": (54, 70), "validation": (18, 24)}  # per-class count range (uneven, like Food-11)
N_TESTING = 88


def _unit_polygon(kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Outer (and inner hole) polygon of a shape, roughly unit radius, centred at 0."""
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "circle":
        return circle, None
    if kind == "ellipse":
        return circle * [1.0, 0.62], None
    if kind == "ring":
        return circle, circle * 0.55
    if kind == "halfdisc":
        h = np.linspace(0, np.pi, 40)
        return np.stack([np.cos(h), np.sin(h) - 0.4], 1), None
    if kind == "star":
        a = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1), None
    if kind == "cross":
        w = 0.33
        return np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1], [-w, w],
                         [-1, w], [-1, -w], [-w, -w]], float), None
    if kind == "leaf":
        h = np.linspace(-1, 1, 32)
        top = np.stack([h, 0.5 * np.sqrt(1 - h ** 2) * (1 + 0.3 * h)], 1)
        return np.concatenate([top, top[::-1] * [1, -1]]), None
    sides = {"square": 4, "triangle": 3, "hexagon": 6, "diamond": 4}[kind]
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False) + (np.pi / 4 if kind == "square" else np.pi / 2)
    poly = np.stack([np.cos(a), np.sin(a)], 1)
    return (poly * [0.6, 1.0] if kind == "diamond" else poly), None


def _area(poly: np.ndarray) -> float:
    """Shoelace area of a polygon."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth random field in [0,1] (h x w x 3) from bicubic upsampled coarse noise."""
    coarse = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), dtype=np.float32) / 255.0


def _texture(kind: str, rng: np.random.Generator, h: int, w: int, angle: float, scale: float) -> np.ndarray:
    """A brightness pattern (h x w, around 1.0) for a class texture."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = max(4.0, scale / 3.0)
    if kind == "stripes":
        return 1.0 + 0.28 * np.sign(np.sin(2 * np.pi * u / period))
    if kind == "checker":
        return 1.0 + 0.25 * np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period))
    if kind == "dots":
        d = np.hypot((u % period) - period / 2, (v % period) - period / 2)
        return np.where(d < period / 4, 0.6, 1.0)
    if kind == "rings":
        return 1.0 + 0.2 * np.sin(2 * np.pi * np.hypot(u - u.mean(), v - v.mean()) / period)
    if kind == "waves":
        return 1.0 + 0.25 * np.sin(2 * np.pi * (u + 0.25 * period * np.sin(2 * np.pi * v / period)) / period)
    if kind == "speckle":
        return 1.0 + 0.3 * (rng.random((h, w)).astype(np.float32) - 0.5)
    return np.ones((h, w), np.float32) + 0.05 * (rng.random((h, w)).astype(np.float32) - 0.5)


def _polygon_mask(size: tuple[int, int], polys: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Rasterise polygons (fill 255 or 0, in order) into a bool mask of size (w, h)."""
    im = Image.new("L", size, 0)
    draw = ImageDraw.Draw(im)
    for poly, fill in polys:
        draw.polygon([tuple(p) for p in poly], fill=fill)
    return np.asarray(im) > 127


def _transform(poly: np.ndarray, radius: float, angle: float, cx: float, cy: float) -> np.ndarray:
    """Scale, rotate and move a unit polygon."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return poly @ rot.T * radius + [cx, cy]


def render(label: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """One demo image of a class and its ground-truth mask (object = 255)."""
    w, h = int(rng.integers(160, 321)), int(rng.integers(160, 321))
    # Shared clutter: a smooth colour field, a gradient and distractors whose law never depends on the label.
    img = 0.55 * _smooth_noise(rng, h, w, int(rng.integers(3, 7)))
    g0, g1 = rng.random(3), rng.random(3)
    ramp = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
    ramp = ramp[None, :, None] if ramp.size == w else ramp[:, None, None]
    img = img + 0.45 * (g0 + (g1 - g0) * ramp)
    for _ in range(int(rng.integers(3, 7))):
        kind = rng.choice(["blob", "bar", "box"])
        r = float(rng.uniform(0.04, 0.09)) * min(w, h)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        if kind == "blob":
            poly = _transform(_unit_polygon("circle")[0], r, 0, cx, cy) * [1, rng.uniform(0.6, 1.0)]
        elif kind == "bar":
            poly = _transform(np.array([[-1, -0.15], [1, -0.15], [1, 0.15], [-1, 0.15]]), 2 * r,
                              rng.uniform(0, np.pi), cx, cy)
        else:
            poly = _transform(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.7, r, rng.uniform(0, np.pi), cx, cy)
        m = _polygon_mask((w, h), [(poly, 255)])
        img[m] = rng.random(3)
    # The class object.
    shape, colour, texture = CLASS_STYLE[label]
    outer, inner = _unit_polygon(shape)
    frac = rng.uniform(0.06, 0.22)
    unit_area = _area(outer) - (_area(inner) if inner is not None else 0.0)
    radius = float(np.sqrt(frac * w * h / unit_area))
    angle = float(rng.uniform(0, 2 * np.pi))
    ext = radius * 1.0
    cx = rng.uniform(ext, max(ext + 1, w - ext))
    cy = rng.uniform(ext, max(ext + 1, h - ext))
    polys = [(_transform(outer, radius, angle, cx, cy), 255)]
    if inner is not None:
        polys.append((_transform(inner, radius, angle, cx, cy), 0))
    mask = _polygon_mask((w, h), polys)
    base = np.array(colour, np.float32) / 255.0 * rng.uniform(0.85, 1.05) + rng.uniform(-0.04, 0.04, 3)
    tex = _texture(texture, rng, h, w, angle, radius)
    obj = np.clip(base[None, None, :] * tex[:, :, None], 0, 1)
    img = np.clip(img, 0, 1)
    img[mask] = obj[mask]
    pic = Image.fromarray((img * 255 + 0.5).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return pic, Image.fromarray(mask.astype(np.uint8) * 255)


def _jpeg_bytes(im: Image.Image) -> bytes:
    """Encode as JPEG with fixed settings (same bytes every time)."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92, optimize=False)
    return buf.getvalue()


def plan(seed: int = SEED) -> list[tuple[str, str, int]]:
    """Every file to generate: (split, name, label), in a fixed order."""
    rng = np.random.default_rng(seed)
    items: list[tuple[str, str, int]] = []
    for split, (lo, hi) in COUNTS.items():
        for label in range(len(CLASS_NAMES)):
            for n in range(int(rng.integers(lo, hi + 1))):
                items.append((split, f"{label}_{n}.jpg", label))
    labels = rng.integers(0, len(CLASS_NAMES), N_TESTING)
    items += [("testing", f"{n}.jpg", int(lb)) for n, lb in enumerate(labels)]
    return items


def generate(root: Path, seed: int = SEED) -> None:
    """Write the demo tree (images + masks/<split>/<stem>.png) into root, deterministically."""
    for k, (split, name, label) in enumerate(plan(seed)):
        pic, mask = render(label, np.random.default_rng([seed, k]))
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        (root / split / name).write_bytes(_jpeg_bytes(pic))
        mask.save(root / "masks" / split / (Path(name).stem + ".png"), optimize=False)
    (root / "VERSION").write_text(GENERATOR_VERSION + "\n")


def ensure_demo_data(root: Path = DEMO_DIR) -> Path:
    """The demo tree, generated on first use (into a temporary folder, then renamed into place)."""
    stamp = root / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == GENERATOR_VERSION:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        generate(tmp)
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first: keep its copy
            if not (stamp.is_file() and stamp.read_text().strip() == GENERATOR_VERSION):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def gt_subset(root: Path = DEMO_DIR, per_class: int = 2) -> list[str]:
    """The fixed ground-truth subset shared by the explainer tests: the first validation images of each class."""
    from dataset import list_images, parse_label

    names = list_images(root / "validation")
    out: list[str] = []
    for label in range(len(CLASS_NAMES)):
        out += [n for n in names if parse_label(n) == label][:per_class]
    return out
