"""Trust metrics for attribution maps: deletion/insertion AUC (Petsiuk et al. 2018), the cascading model
parameter randomisation sanity check (Adebayo et al. 2018), and ground-truth scores (pointing game, mass in mask).

Conventions (also written into trust.json):
- Pixels are ranked by the raw map value, highest first (signed maps: evidence for the target first); ties are
  broken by a seeded random permutation, so a constant map deletes pixels in random order.
- Deletion sets the removed pixels to 0 (black); insertion pastes the original pixels onto a Gaussian-blurred copy.
  The curve is the target-class softmax probability against the fraction of pixels changed, x in [0, 1];
  the AUC is its trapezoid-rule area.
- Ground truth uses the map's positive part (evidence for the target). A map with no maximum (constant, e.g.
  all zero) points nowhere and holds no positive mass: pointing game 0 and mass in mask 0, never NaN.
- Sanity: Spearman rank correlation of the ABSOLUTE map values (the paper's main variant) between the map of
  the trained model and the map after each cascading re-initialisation step; a constant map has no ranking and
  scores 0.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import imageops
from model import device_of

METRICS = ("deletion_auc", "insertion_auc", "pointing_game", "mass_in_mask", "mass_in_mask_ratio",
           "sanity_spearman")
SANITY_FAIL = 0.5          # Spearman >= this after full randomisation: "fails sanity check"

MapFn = Callable[[nn.Module, torch.Tensor, np.ndarray], np.ndarray]


# ---------------------------------------------------------------- pure compute: faithfulness

def pixel_ranks(m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of every pixel (0 = most important) by descending map value, ties broken by a random permutation."""
    flat = np.nan_to_num(np.asarray(m, dtype=np.float64)).ravel()
    order = np.lexsort((rng.permutation(flat.size), -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks


def perturbation_curves(model: nn.Module, images: torch.Tensor, ranks: np.ndarray, targets: np.ndarray,
                        mode: str, steps: int = 64, batch_size: int = 8, blur: float = 1 / 16,
                        channels_last: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Deletion or insertion curves: (x = fraction of pixels changed (steps+1), probs N x (steps+1)).

    `ranks` is N x (H*W) from pixel_ranks; insertion starts from a Gaussian blur with sigma = `blur` x the image
    side. Every perturbed copy of every image goes through the model in batches of `batch_size` under inference mode,
    as channels_last input by default (the run's model format; about 2.5x faster on our CPU).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be deletion or insertion, got {mode!r}")
    n, _, h, w = images.shape
    counts = (np.arange(steps + 1) * (h * w)) // steps          # pixels changed after each step: 0 .. H*W
    start = imageops.blurred(images, blur) if mode == "insertion" else torch.zeros_like(images)
    probs = perturbed_probs(model, images, np.asarray(ranks).reshape(n, h, w), targets, counts, start,
                            insert=mode == "insertion", batch_size=batch_size, channels_last=channels_last)
    return counts / (h * w), probs


def changed_pixels(ranks: torch.Tensor, counts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x 1 x H x W bool: each row's units ranked below its count (ranks B x h x w), upsampled to size by nearest."""
    changed = (ranks < counts.view(-1, 1, 1))[:, None]
    if changed.shape[-2:] == size:
        return changed
    return F.interpolate(changed.float(), size=size, mode="nearest") > 0


def perturbed_probs(model: nn.Module, images: torch.Tensor, ranks: np.ndarray, targets: np.ndarray,
                    counts: np.ndarray, start: torch.Tensor, *, insert: bool = False, batch_size: int = 8,
                    channels_last: bool = True, pad: bool = False) -> np.ndarray:
    """Target-class softmax probabilities (N x len(counts), float64) once each image's counts[k] top-ranked units
    changed: deletion pastes `start` over them, insertion pastes them onto `start`.

    `ranks` is N x h x w over units (0 = changed first): the pixels, or grid cells upsampled by nearest. The (image,
    count) pairs run image-major through the model in batches of `batch_size` under inference mode, as channels_last
    input by default; `pad` fills the last batch with black images, so every call has exactly batch_size rows.
    """
    n, _, h, w = images.shape
    device = device_of(model)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ranks_t = torch.as_tensor(np.asarray(ranks), dtype=torch.int64)
    counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.int64)
    targets_t = torch.as_tensor(np.asarray(targets))
    pairs = np.stack(np.meshgrid(np.arange(n), np.arange(len(counts_t)), indexing="ij"), -1).reshape(-1, 2)
    probs = np.empty(len(pairs), dtype=np.float64)
    with torch.inference_mode():
        for b in range(0, len(pairs), batch_size):
            img_idx = torch.as_tensor(pairs[b:b + batch_size, 0])
            changed = changed_pixels(ranks_t[img_idx], counts_t[torch.as_tensor(pairs[b:b + batch_size, 1])], (h, w))
            x = torch.where(changed, images[img_idx], start[img_idx]) if insert else \
                torch.where(changed, start[img_idx], images[img_idx])
            real = len(x)
            if pad and real < batch_size:
                x = torch.cat([x, x.new_zeros((batch_size - real, *x.shape[1:]))])
            p = torch.softmax(model(x.to(device).contiguous(memory_format=fmt)).float(), 1)
            probs[b:b + real] = p[torch.arange(real), targets_t[img_idx]].cpu().numpy()
    return probs.reshape(n, len(counts_t))


def auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid-rule area under curve(s) y (last axis) over x."""
    return np.trapezoid(y, x, axis=-1)


# ---------------------------------------------------------------- pure compute: ground truth

def pointing_game(m: np.ndarray, mask: np.ndarray) -> float:
    """1 when the map's maximum lies inside the mask (tied maxima: the fraction inside); constant map: 0."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float64))
    top = m.max()
    if top <= m.min():
        return 0.0
    return float(np.asarray(mask, bool)[m == top].mean())


def mass_in_mask(m: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the map's positive mass that lies inside the mask; no positive mass: 0."""
    pos = np.clip(np.nan_to_num(np.asarray(m, dtype=np.float64)), 0, None)
    total = pos.sum()
    return float(pos[np.asarray(mask, bool)].sum() / total) if total > 0 else 0.0


# ---------------------------------------------------------------- pure compute: sanity check

def average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of a flat array, tied values sharing their average rank."""
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.ravel()]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of |a| and |b| (flattened); 0 when either has no ranking (constant)."""
    ra = average_ranks(np.abs(np.nan_to_num(np.asarray(a, dtype=np.float64))).ravel())
    rb = average_ranks(np.abs(np.nan_to_num(np.asarray(b, dtype=np.float64))).ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def stability(a: np.ndarray, b: np.ndarray, top: float = 0.05) -> tuple[float, float]:
    """How far two maps of one image by two seeds of one method agree: the Spearman correlation of their values and
    the overlap (intersection over union) of their top `top` share of pixels (ties by pixel order)."""
    ra = average_ranks(np.nan_to_num(np.asarray(a, dtype=np.float64)).ravel())
    rb = average_ranks(np.nan_to_num(np.asarray(b, dtype=np.float64)).ravel())
    rho = float(np.corrcoef(ra, rb)[0, 1]) if ra.std() > 0 and rb.std() > 0 else float(ra.std() == rb.std() == 0)
    k = max(1, int(np.ceil(top * ra.size)))
    sa = set(np.argsort(-ra, kind="stable")[:k].tolist())
    sb = set(np.argsort(-rb, kind="stable")[:k].tolist())
    return rho, len(sa & sb) / len(sa | sb)


def parameterised_modules(model: nn.Module, net: nn.Module, example: torch.Tensor) -> list[str]:
    """Names (within `net`) of the modules that own parameters, in the order model(example) first runs them."""
    order: list[str] = []
    handles = [mod.register_forward_hook(lambda m, i, o, name=name: order.append(name) if name not in order else None)
               for name, mod in net.named_modules() if name and any(True for _ in mod.parameters(recurse=False))]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return order


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialise one module's own parameters (its reset_parameters, else N(0, 0.02)), seeded."""
    params = list(module.parameters(recurse=False))
    devices = sorted({p.device.index or 0 for p in params if p.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            for p in params:
                p.normal_(0.0, 0.02)


def cascade(model: nn.Module, net: nn.Module, images: torch.Tensor, targets: np.ndarray,
            methods: dict[str, MapFn], seed: int) -> dict[str, Any]:
    """Cascading randomisation from the output layer down on a deep copy of `model` (whose user network is `net`).

    Each method is fn(model_copy, images, targets) -> N x H x W maps (layer names resolve inside the copy). Returns
    {"layers": ["original", name...], "maps": {method: steps x N x H x W}, "spearman": {method: steps x N}},
    where row k holds the maps after re-initialising the top k parameterised modules.
    """
    path = _module_path(model, net)
    work = copy.deepcopy(model).eval()
    work_net = work.get_submodule(path) if path else work
    modules = dict(work_net.named_modules())
    names = parameterised_modules(work, work_net, images[:1].to(device_of(model)))
    maps: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for step, name in enumerate([None] + names[::-1]):
        if name is not None:
            reinitialise(modules[name], int(np.random.default_rng([seed, step]).integers(0, 2 ** 62)))
        for method, fn in methods.items():
            maps[method].append(np.asarray(fn(work, images, targets), dtype=np.float32))
    out_maps = {m: np.stack(v) for m, v in maps.items()}
    corr = {m: np.array([[spearman(v[0, i], v[k, i]) for i in range(v.shape[1])] for k in range(len(v))])
            for m, v in out_maps.items()}
    return {"layers": ["original"] + names[::-1], "maps": out_maps, "spearman": corr}


def _module_path(model: nn.Module, net: nn.Module) -> str:
    """Dotted path of `net` inside `model` ('' when they are the same module)."""
    for name, mod in model.named_modules():
        if mod is net:
            return name
    raise ValueError("net is not a submodule of model")



# ---------------------------------------------------------------- pure compute: statistics

def bootstrap(values: Any, rng: np.random.Generator, resamples: int = 2000, level: float = 0.95) -> dict[str, Any]:
    """Mean, population std, n and the percentile bootstrap interval [lo, hi] of the mean; None values when empty."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return {"mean": None, "std": None, "lo": None, "hi": None, "n": 0}
    means = v[rng.integers(0, v.size, size=(int(resamples), v.size))].mean(1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {"mean": float(v.mean()), "std": float(v.std()), "lo": float(lo), "hi": float(hi), "n": int(v.size)}


def paired_gain(better: Any, worse: Any, rng: np.random.Generator, resamples: int = 2000) -> dict[str, Any]:
    """Bootstrap of the mean of (better - worse) over paired images (both arrays aligned per image)."""
    return bootstrap(np.asarray(better, np.float64) - np.asarray(worse, np.float64), rng, resamples)
