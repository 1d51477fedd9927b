"""The embedded demo (v2): a deterministic synthetic dataset in the Food-11 layout, with ground truth.

Each image holds one class object (a shape, colour and texture per class, at a random position, scale and
rotation, 6-22% of the image) on clutter that every class shares: smooth noise, a colour gradient and
distractor shapes. The object's mask is `masks/<split>/<name>.png`. The data plants two kinds of trouble:

- Confusable pairs (PAIRS): Noodles/Pasta and Rice, and Meat and Seafood, share shape and colour and differ
  only in texture (patterned vs plain); Bread and Fried food share colour and differ in shape and texture
  (round and plain vs long and ridged).
  Within a pair the class cue is a blend between the two classes' looks: near the class's own end for most
  images, but near the partner's end for PAIR_LOOKALIKE of either class, which can't be told apart.
- One shortcut (SHORTCUT_CLASS, Soup): a small stamp (blue square, white centre) at a random place on the
  background sits on MARK_RATE of the training images of Soup and on few of the others; in validation and testing
  it sits on the same share of every class, independently of the class. Soup's object is faint in
  FAINT_RATE of its images (a few of every other class too), so the stamp is the easier cue. The stamp's
  mask is `masks_mark/<split>/<name>.png`, written only for the images that carry it.

Outside the object and the stamp nothing carries label information. `truth.csv` in the tree lists every
image's label, stamp, object contrast and pair blend; `classes.json` beside it describes each class's look, the
pairs and the stamp in words.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dataset import CLASS_NAMES

REPO = Path(__file__).resolve().parent
DEMO_DIR = REPO / ".cache" / "demo-food11"
DEMO_CHECKPOINT = REPO / "checkpoints" / "demo_hw3_w025.pt"
GENERATOR_VERSION = "2.6"
SEED = 20261127

# Per class: (polygon kind, base RGB, texture). Pair members share what their pair shares (PAIRS).
CLASS_STYLE = [
    ("morph", (214, 150, 60), "smooth"),         # Bread: the round, plain end of the Bread/Fried food morph
    ("square", (236, 236, 222), "smooth"),       # Dairy product
    ("triangle", (232, 100, 170), "stripes"),    # Dessert
    ("ellipse", (250, 214, 40), "rings"),        # Egg
    ("morph", (214, 150, 60), "stripes"),        # Fried food: the long, ridged end of the morph
    ("hexagon", (170, 60, 60), "smooth"),        # Meat
    ("diamond", (236, 226, 150), "waves"),       # Noodles/Pasta
    ("diamond", (236, 226, 150), "smooth"),      # Rice
    ("hexagon", (170, 60, 60), "checker"),       # Seafood
    ("halfdisc", (120, 70, 30), "smooth"),       # Soup
    ("leaf", (40, 170, 50), "checker"),          # Vegetable/Fruit
]
# Confusable pairs (a, b, what differs). Each image's blend t mixes a's texture into b's (texture pairs: a
# patterned and a plain surface, so t is the pattern's contrast) and, for the shape pair, also stretches a disc
# into a 3:1 oval: near a's end (0-0.1) or b's (0.9-1), END_RANGES. PAIR_LOOKALIKE of either class look like
# the partner (t drawn from the partner's end): those no model can tell apart.
PAIRS = [(6, 7, "texture"), (5, 8, "texture"), (0, 4, "shape and texture")]
PAIR_LOOKALIKE = 0.15
END_RANGES = ((0.0, 0.1), (0.9, 1.0))
SHORTCUT_CLASS = 9
MARK_RATE = {"training": (0.85, 0.04), "validation": (0.2, 0.2), "testing": (0.2, 0.2)}  # (shortcut class, others)
FAINT_RATE = (0.45, 0.04)        # share of images whose object is faint: (shortcut class, others)
FAINT_CONTRAST = (0.06, 0.2)     # a faint object's opacity over the clutter
# Words for the looks above, for the description of each class written beside truth.csv (LOOKS_FILE).
SHAPE_WORDS = {"square": "square", "triangle": "triangle", "ellipse": "ellipse", "hexagon": "hexagon",
               "diamond": "diamond", "halfdisc": "half disc", "leaf": "leaf"}
MORPH_WORDS = ("round disc", "long 3:1 oval")        # the shape pair's two ends
TEXTURE_WORDS = {"smooth": "plain", "stripes": "striped", "rings": "ringed", "waves": "wavy", "checker": "checkered"}
COLOUR_WORDS = {(214, 150, 60): "golden-brown", (236, 236, 222): "off-white", (232, 100, 170): "pink",
                (250, 214, 40): "yellow", (170, 60, 60): "dark red", (236, 226, 150): "pale yellow",
                (120, 70, 30): "dark brown", (40, 170, 50): "green"}
STAMP_LOOK = "a small blue square with a white centre (12% of the image's short side) on the background"
LOOKS_FILE = "classes.json"
COUNTS = {"training": (100, 124), "validation": (44, 56)}  # per-class count range (uneven, like Food-11)
N_TESTING = 88


@dataclass(frozen=True)
class Item:
    """One generated image's plan: where it goes and its ground truth."""

    split: str
    name: str
    label: int
    mark: bool
    contrast: float    # the object's opacity (1 = full, < 1 = faint)
    blend: float       # pair blend t (0 = first class's look, 1 = second's); -1 outside the pairs


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


def _morph_polygon(t: float) -> np.ndarray:
    """The shape pair's outline: a disc (t = 0) stretched into an oval of aspect 1 + 2t (3:1 at t = 1)."""
    a = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    k = np.sqrt(1.0 + 2.0 * t)
    return np.stack([k * np.cos(a), np.sin(a) / k], 1)


def _pair_of(label: int) -> tuple[int, int, str] | None:
    """The confusable pair a class belongs to, if any."""
    return next((p for p in PAIRS if label in p[:2]), None)


def mark_box(w: int, h: int, obj: np.ndarray, rng: np.random.Generator, tries: int = 64) -> np.ndarray:
    """The stamp's square (x0, y0, x1, y1) in a w x h image: side 12% of the short side, at a random place on the
    background (clear of the object by a few pixels where the draws allow it)."""
    side = 0.12 * min(w, h)
    pad = int(0.03 * min(w, h))
    for _ in range(tries):
        x0, y0 = rng.uniform(0.03 * w, w - side - 0.03 * w), rng.uniform(0.03 * h, h - side - 0.03 * h)
        box = obj[max(0, int(y0) - pad):int(y0 + side) + pad + 1, max(0, int(x0) - pad):int(x0 + side) + pad + 1]
        if not box.any():
            break
    return np.array([x0, y0, x0 + side, y0 + side])


def render(label: int, rng: np.random.Generator, mark: bool = False, contrast: float = 1.0, blend: float | None = None
           ) -> tuple[Image.Image, Image.Image, Image.Image | None]:
    """One demo image, its object mask (255 = object) and its stamp mask (None without the stamp).

    `blend` is the pair blend of a pair class (default: the class's own end, 0 or 1); `contrast` the object's opacity.
    """
    pair = _pair_of(label)
    if blend is None or blend < 0:
        blend = float(pair is not None and label == pair[1])
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
    if shape == "morph":
        outer, inner = _morph_polygon(blend), None
    else:
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
    if pair is not None and "texture" in pair[2]:
        tex_a = _texture(CLASS_STYLE[pair[0]][2], rng, h, w, angle, radius)
        tex_b = _texture(CLASS_STYLE[pair[1]][2], rng, h, w, angle, radius)
        tex = (1 - blend) * tex_a + blend * tex_b
    else:
        tex = _texture(texture, rng, h, w, angle, radius)
    obj = np.clip(base[None, None, :] * tex[:, :, None], 0, 1)
    img = np.clip(img, 0, 1)
    img[mask] = contrast * obj[mask] + (1 - contrast) * img[mask]
    # The stamp: drawn for every image (same random draws), kept only where the plan puts it.
    x0, y0, x1, y1 = mark_box(w, h, mask, np.random.default_rng(int(rng.integers(2 ** 62))))
    stamp = _polygon_mask((w, h), [(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), 255)])
    q = (x1 - x0) * 0.3
    centre = _polygon_mask((w, h), [(np.array([[x0 + q, y0 + q], [x1 - q, y0 + q], [x1 - q, y1 - q],
                                               [x0 + q, y1 - q]]), 255)])
    mark_img = None
    if mark:
        img[stamp] = np.array([30, 60, 200], np.float32) / 255.0
        img[centre] = 1.0
        mask &= ~stamp
        mark_img = Image.fromarray(stamp.astype(np.uint8) * 255)
    pic = Image.fromarray((img * 255 + 0.5).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return pic, Image.fromarray(mask.astype(np.uint8) * 255), mark_img


def _jpeg_bytes(im: Image.Image) -> bytes:
    """Encode as JPEG with fixed settings (same bytes every time)."""
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92, optimize=False)
    return buf.getvalue()


def _exact_share(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """A bool array of n with round(rate x n) True entries at random places."""
    out = np.zeros(n, bool)
    out[rng.permutation(n)[:int(round(rate * n))]] = True
    return out


def plan(seed: int = SEED) -> list[Item]:
    """Every file to generate with its ground truth, in a fixed order."""
    rng = np.random.default_rng(seed)
    groups: list[tuple[str, int, list[str]]] = []
    for split, (lo, hi) in COUNTS.items():
        for label in range(len(CLASS_NAMES)):
            groups.append((split, label, [f"{label}_{n}.jpg" for n in range(int(rng.integers(lo, hi + 1)))]))
    test_labels = rng.integers(0, len(CLASS_NAMES), N_TESTING)
    groups.append(("testing", -1, [f"{n}.jpg" for n in range(N_TESTING)]))
    items: list[Item] = []
    for split, label, names in groups:
        labels = [int(lb) for lb in test_labels] if label < 0 else [label] * len(names)
        shortcut, other = MARK_RATE[split]
        g = np.random.default_rng([seed, 0x4D41524B, len(items)])
        if split == "training":
            marks = _exact_share(g, len(names), shortcut if label == SHORTCUT_CLASS else other)
        else:  # the same share in every class: independent of the label
            marks = _exact_share(g, len(names), other)
        faint = _exact_share(g, len(names), FAINT_RATE[0] if label == SHORTCUT_CLASS else FAINT_RATE[1])
        lookalike = _exact_share(g, len(names), PAIR_LOOKALIKE)
        for name, lb, mk, fa, alike in zip(names, labels, marks, faint, lookalike):
            pair = _pair_of(lb)
            if pair is None:
                blend = -1.0
            else:  # the class's own end, or for a look-alike its partner's
                first = (lb == pair[0]) != bool(alike)
                blend = float(g.uniform(*END_RANGES[0 if first else 1]))
            contrast = float(g.uniform(*FAINT_CONTRAST)) if fa else 1.0
            items.append(Item(split, name, lb, bool(mk), round(contrast, 4), round(blend, 4)))
    return items


def generate(root: Path, seed: int = SEED) -> None:
    """Write the demo tree (images, masks/, masks_mark/, truth.csv) into root, deterministically."""
    items = plan(seed)
    for k, item in enumerate(items):
        pic, mask, mark = render(item.label, np.random.default_rng([seed, k]), item.mark, item.contrast, item.blend)
        stem = Path(item.name).stem + ".png"
        for sub in (root / item.split, root / "masks" / item.split, root / "masks_mark" / item.split):
            sub.mkdir(parents=True, exist_ok=True)
        (root / item.split / item.name).write_bytes(_jpeg_bytes(pic))
        mask.save(root / "masks" / item.split / stem, optimize=False)
        if mark is not None:
            mark.save(root / "masks_mark" / item.split / stem, optimize=False)
    with open(root / "truth.csv", "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["split", "name", "label", "mark", "contrast", "blend"])
        for it in items:
            out.writerow([it.split, it.name, it.label, int(it.mark), f"{it.contrast:.4f}", f"{it.blend:.4f}"])
    write_looks(root)
    (root / "VERSION").write_text(GENERATOR_VERSION + "\n")


def looks() -> dict:
    """Each class's look, the confusable pairs and the stamp, in words, from the generator's own definitions."""
    classes = []
    for label, (kind, rgb, texture) in enumerate(CLASS_STYLE):
        pair = _pair_of(label)
        shape = MORPH_WORDS[int(label == pair[1])] if kind == "morph" else SHAPE_WORDS[kind]
        partner = (pair[1] if label == pair[0] else pair[0]) if pair else None
        classes.append({"label": label, "name": CLASS_NAMES[label],
                        "look": f"{TEXTURE_WORDS[texture]} {COLOUR_WORDS[rgb]} {shape}",
                        "partner": None if partner is None else CLASS_NAMES[partner],
                        "differs_in": pair[2] if pair else None})
    stamp = {"look": STAMP_LOOK, "class": CLASS_NAMES[SHORTCUT_CLASS],
             "rates": {split: {"class": a, "others": b} for split, (a, b) in MARK_RATE.items()}}
    return {"classes": classes, "pairs": [[CLASS_NAMES[a], CLASS_NAMES[b], what] for a, b, what in PAIRS],
            "lookalike_share": PAIR_LOOKALIKE, "stamp": stamp, "faint_share": {"class": FAINT_RATE[0],
                                                                               "others": FAINT_RATE[1]}}


def write_looks(root: Path) -> Path:
    """Write LOOKS_FILE (looks()) into the demo tree beside truth.csv."""
    path = Path(root) / LOOKS_FILE
    path.write_text(json.dumps(looks(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def ensure_demo_data(root: Path = DEMO_DIR) -> Path:
    """The demo tree, generated on first use (into a temporary folder, then renamed into place)."""
    stamp = root / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == GENERATOR_VERSION:
        if not (root / LOOKS_FILE).is_file():     # a tree generated before the looks were written
            write_looks(root)
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


def read_truth(root: Path = DEMO_DIR) -> dict[tuple[str, str], Item]:
    """The tree's truth.csv: (split, file name) -> Item."""
    with open(Path(root) / "truth.csv", newline="") as f:
        return {(r["split"], r["name"]): Item(r["split"], r["name"], int(r["label"]), r["mark"] == "1",
                                              float(r["contrast"]), float(r["blend"])) for r in csv.DictReader(f)}


def mark_path(root: Path, split: str, name: str) -> Path | None:
    """The stamp mask of one image (masks_mark/<split>/<stem>.png), None when the image carries no stamp."""
    import dataset

    p = dataset.mark_path(root, split, name)
    return p if p.is_file() else None


def gt_subset(root: Path = DEMO_DIR, per_class: int = 3, mark: bool = False) -> list[str]:
    """The fixed ground-truth subset: per class, the first validation images with (mark=True) or without the
    stamp and with a full-contrast object (3 per class: 33 images)."""
    truth = read_truth(root)
    from dataset import list_images, parse_label

    names = list_images(Path(root) / "validation")
    out: list[str] = []
    for label in range(len(CLASS_NAMES)):
        keep = [n for n in names if parse_label(n) == label and truth[("validation", n)].mark == mark
                and truth[("validation", n)].contrast == 1.0]
        out += keep[:per_class]
    return out
