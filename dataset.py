"""Food-11 folders, plain image folders, image decoding and resizing, masks, and whole-split loaders."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from errors import UserError

CLASS_NAMES = ["Bread", "Dairy product", "Dessert", "Egg", "Fried food", "Meat", "Noodles/Pasta", "Rice",
               "Seafood", "Soup", "Vegetable/Fruit"]
SPLITS = ("training", "validation", "testing")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_LABELLED = re.compile(r"^(\d+)_\d+\.[A-Za-z]+$")
PLAIN_DEFAULT = 8   # a plain folder: every image is explained by default, up to this many (--images all: every one)


def parse_label(name: str) -> int | None:
    """Label of a Food-11 file name `<label>_<n>.jpg`, or None for any other name."""
    m = _LABELLED.match(name)
    return int(m.group(1)) if m else None


def list_images(folder: Path) -> list[str]:
    """Image file names in a folder, in plain string order (as the course code lists them)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def read_class_names(path: str | Path | None) -> list[str]:
    """Class names from a text file (one a line), or Food-11's."""
    if path is None:
        return list(CLASS_NAMES)
    try:
        names = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise UserError(f"cannot read --class-names {path}: {exc.strerror}") from None
    if not names:
        raise UserError(f"--class-names {path} is empty")
    return names


@dataclass
class ImageSet:
    """One listing of images: a Food-11 split, a plain folder, or single files."""

    name: str
    paths: list[Path]
    labels: list[int | None]
    mask_dir: Path | None = None
    files: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.files = [p.name for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labelled(self) -> bool:
        """True when every image has a label."""
        return bool(self.labels) and all(lb is not None for lb in self.labels)

    def mask_path(self, i: int) -> Path | None:
        """The ground-truth mask file of image i, when the data carries masks."""
        if self.mask_dir is None:
            return None
        p = self.mask_dir / (Path(self.files[i]).stem + ".png")
        return p if p.is_file() else None


def is_food11(root: Path) -> bool:
    """True when a folder has Food-11's split folders."""
    return any((root / s).is_dir() for s in SPLITS)


def open_split(data: str | Path, split: str) -> ImageSet:
    """The images of one split of a Food-11 tree, or of a plain folder / single image (split ignored)."""
    root = Path(data)
    if not root.exists():
        raise UserError(f"data path does not exist: {root}")
    if root.is_file():
        if root.suffix.lower() not in IMAGE_EXTS:
            raise UserError(f"not an image file: {root}")
        return ImageSet(root.name, [root], [None])   # labels come from names only inside a Food-11 tree
    if is_food11(root):
        folder = root / split
        if not folder.is_dir():
            have = ", ".join(s for s in SPLITS if (root / s).is_dir())
            raise UserError(f"{root} has no {split}/ folder (it has: {have})")
        mask_dir = root / "masks" / split
        mask_dir = mask_dir if mask_dir.is_dir() else None
    else:   # a plain folder: phone names like 20240612_101500.jpg are not labels
        folder, mask_dir = root, None
    try:
        names = list_images(folder)
    except OSError as exc:
        raise UserError(f"cannot list {folder}: {exc.strerror}") from None
    if not names:
        raise UserError(f"no images in {folder}")
    return ImageSet(split if folder != root else root.name, [folder / n for n in names],
                    [parse_label(n) if folder != root else None for n in names], mask_dir)


def select(images: ImageSet, spec: list[str] | None, default_indices: tuple[int, ...] = (83, 4218, 4707, 8598),
           plain: bool = False) -> list[int]:
    """Indices chosen by `--images` (indices, file names or `all`; an item that is not a file name is split at its
    commas) or by the default rule.

    Default: for a plain folder (plain=True) its first PLAIN_DEFAULT images; for a Food-11 split the course's
    four when they all exist, else the first image of each of the first four classes, else the first four files.
    """
    spec = [p.strip() for item in spec or [] for p in ([item] if item in images.files else item.split(","))
            if p.strip()]
    if "all" in spec:
        return list(range(len(images)))
    if spec:
        out = []
        for item in spec:
            if item.isdigit():
                i = int(item)
                if i >= len(images):
                    raise UserError(f"image index {i} out of range: {images.name} has {len(images)} images "
                                    f"(0..{len(images) - 1})")
                out.append(i)
            elif item in images.files:
                out.append(images.files.index(item))
            else:
                raise UserError(f"no image named {item!r} in {images.name}")
        return out
    if plain:
        return list(range(min(PLAIN_DEFAULT, len(images))))
    if all(i < len(images) for i in default_indices):
        return list(default_indices)
    if images.labelled:
        firsts: dict[int, int] = {}
        for i, lb in enumerate(images.labels):
            firsts.setdefault(lb, i)
        return [firsts[lb] for lb in sorted(firsts)[:4]]
    return list(range(min(4, len(images))))


@dataclass(frozen=True)
class Resize:
    """How a picture becomes the model's square input.

    stretch: straight to size x size (the course's way). crop: the shorter side to `short_side` (default
    size * 256 / 224, torchvision's ImageNet ratio) keeping the aspect, then the centre size x size, exactly as
    torchvision's Resize + CenterCrop do on PIL images. interpolation: the model's declared resampling.
    """

    mode: str = "stretch"
    short_side: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.mode not in ("stretch", "crop"):
            raise UserError(f"resize mode {self.mode!r}: use stretch or crop")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise UserError(f"interpolation {self.interpolation!r}: use bilinear or bicubic")

    def boxes(self, width: int, height: int, size: int) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
        """(resized width, height) and the crop box (left, top, right, bottom) in the resized picture, or None."""
        if self.mode == "stretch":
            return (size, size), None
        short = max(size, self.short_side or int(round(size * 256 / 224)))
        if width <= height:
            new = (short, int(short * height / width))
        else:
            new = (int(short * width / height), short)
        left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
        return new, (left, top, left + size, top + size)

    def describe(self, size: int) -> str:
        """One phrase for run.json and the report."""
        if self.mode == "stretch":
            return f"stretched to {size} x {size} ({self.interpolation})"
        short = max(size, self.short_side or int(round(size * 256 / 224)))
        return f"shorter side to {short}, centre {size} x {size} crop ({self.interpolation})"


STRETCH = Resize()


def _pil_filter(resize: Resize) -> int:
    """PIL's resampling filter for a Resize."""
    return Image.BICUBIC if resize.interpolation == "bicubic" else Image.BILINEAR


def load_image(path: Path, size: int, cv2_mode: bool = False, resize: Resize = STRETCH) -> np.ndarray:
    """Decode an image to float32 RGB in [0,1] at size x size; a bad file raises a one-line UserError.

    PIL mode: EXIF rotation applied, any mode (L, RGBA, P, CMYK, I;16) to RGB, then `resize` (default: bilinear
    stretch like the HW5 course code). cv2 mode reproduces the HW3 baseline: cv2.imread then cv2.resize (returned
    here as RGB).
    """
    if cv2_mode:
        import cv2

        check_complete(path)   # OpenCV decodes a truncated JPEG with only a warning
        arr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if arr is None:
            raise UserError(f"cannot read image {path}: not a readable image file")
        new, box = resize.boxes(arr.shape[1], arr.shape[0], size)
        arr = cv2.resize(arr, new)
        if box is not None:
            arr = arr[box[1]:box[3], box[0]:box[2]]
        return np.ascontiguousarray(arr[:, :, ::-1], dtype=np.float32) / 255.0
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            elif im.mode.startswith("I;16") or im.mode == "I":
                im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8))
            im = im.convert("RGB")
            new, box = resize.boxes(im.width, im.height, size)
            im = im.resize(new, _pil_filter(resize))
            if box is not None:
                im = im.crop(box)
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        ) from None
    return arr


def check_complete(path: Path) -> None:
    """A one-line UserError when PIL cannot decode the whole file (truncated or corrupt)."""
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        ) from None


def load_mask(path: Path, size: int, resize: Resize = STRETCH) -> np.ndarray:
    """A ground-truth mask (object = 255) brought to size x size like its image (nearest neighbour), as bool."""
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            new, box = resize.boxes(im.width, im.height, size)
            im = im.resize(new, Image.NEAREST)
            if box is not None:
                im = im.crop(box)
            return np.asarray(im) > 127
    except OSError as exc:
        raise UserError(f"cannot read mask {path}: {exc}") from None


def load_masks(images: ImageSet, indices: list[int], size: int, resize: Resize = STRETCH) -> np.ndarray | None:
    """Object masks (N x size x size bool) for indices, brought to size like their images; None unless every image
    has one."""
    paths = [images.mask_path(i) for i in indices]
    return np.stack([load_mask(p, size, resize) for p in paths]) if paths and all(paths) else None


def mark_dir(data: str | Path, split: str) -> Path | None:
    """`masks_mark/<split>/` of a tree with planted-mark masks, else None."""
    d = Path(data) / "masks_mark" / split
    return d if d.is_dir() else None


def mark_path(data: str | Path, split: str, name: str) -> Path:
    """The mark mask file of one image, `masks_mark/<split>/<stem>.png` (it exists only where the image has a mark)."""
    return Path(data) / "masks_mark" / split / (Path(name).stem + ".png")


def load_batch(images: ImageSet, indices: list[int], size: int, cv2_mode: bool = False, resize: Resize = STRETCH
               ) -> tuple[torch.Tensor, np.ndarray | None]:
    """Images (N x 3 x size x size float in [0,1]) and masks (N x size x size bool, or None) for indices."""
    arrs = [load_image(images.paths[i], size, cv2_mode, resize) for i in indices]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()
    return x, load_masks(images, indices, size, resize)


class _SplitData(torch.utils.data.Dataset):
    """Decodes images in worker processes; yields (uint8 CHW tensor, index)."""

    def __init__(self, images: ImageSet, size: int, cv2_mode: bool, resize: Resize = STRETCH):
        self.images, self.size, self.cv2_mode, self.resize = images, size, cv2_mode, resize

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return decode_uint8(self.images.paths[i], self.size, self.cv2_mode, self.resize), i


def decode_uint8(path: Path, size: int, cv2_mode: bool = False, resize: "Resize | None" = None) -> torch.Tensor:
    """One image as the split loaders deliver it: a 3 x size x size uint8 tensor (load_image, rounded)."""
    arr = load_image(path, size, cv2_mode, STRETCH if resize is None else resize)
    return torch.from_numpy((arr * 255.0 + 0.5).astype(np.uint8)).permute(2, 0, 1)


def split_loader(images: ImageSet, size: int, batch_size: int, cv2_mode: bool = False, workers: int = 2,
                 resize: Resize = STRETCH) -> torch.utils.data.DataLoader:
    """A loader over a whole split in listing order (uint8 batches: divide by 255), decoding in workers."""
    return torch.utils.data.DataLoader(_SplitData(images, size, cv2_mode, resize), batch_size=batch_size, shuffle=False,
                                       num_workers=workers, persistent_workers=False)


def batches(loader: torch.utils.data.DataLoader):
    """Iterate a split loader; a bad image in a worker becomes the worker's one-line UserError again."""
    try:
        yield from loader
    except UserError as exc:  # DataLoader re-raises worker errors with the worker's traceback in the text
        last = str(exc).strip().splitlines()[-1]
        raise UserError(last.split("UserError: ", 1)[-1]) from None
