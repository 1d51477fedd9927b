"""Trust metrics for attribution maps: deletion/insertion AUC (Petsiuk et al. 2018), the cascading model
parameter randomisation sanity check (Adebayo et al. 2018), and ground-truth scores (pointing game, mass in mask).

Conventions (also written into trust.json):
- Pixels are ranked by the raw map value, highest first (signed maps: evidence for the target first); ties are
  broken by a seeded random permutation, so a constant map deletes pixels in random order.
- Removal (deletion = most relevant first, MoRF; LeRF = least relevant first) imputes the removed pixels by ROAD's
  noisy linear imputation (Rong et al. 2022, road.py) at steps 0 .. (steps-1)/steps, or sets them to 0 (black) at
  steps 0 .. 1; insertion pastes the original pixels onto a Gaussian-blurred copy. The curve is the target-class
  softmax probability against the fraction of pixels changed; the AUC is its trapezoid-rule area over x's range.
- An image is saturated when its explained probability on the fully blurred image is >= SATURATED.
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
import road
from model import device_of

METRICS = ("deletion_auc", "lerf_auc", "insertion_auc", "pointing_game", "mass_in_mask", "mass_in_mask_ratio",
           "sanity_spearman")
SANITY_FAIL = 0.5          # Spearman >= this after full randomisation: "fails sanity check"
FULL_CASCADE_LAYERS = 16   # up to this many parameterised layers the cascade recomputes the maps after each one
CASCADE_STEPS = 8          # above it, at most this many recomputations, from the output layer to the first layer

MapFn = Callable[[nn.Module, torch.Tensor, np.ndarray], np.ndarray]


# ---------------------------------------------------------------- pure compute: faithfulness

def pixel_ranks(m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of every pixel (0 = most important) by descending map value, ties broken by a random permutation."""
    flat = np.nan_to_num(np.asarray(m, dtype=np.float64)).ravel()
    order = np.lexsort((rng.permutation(flat.size), -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks


MODES = ("deletion", "lerf", "insertion")   # deletion = most relevant first (MoRF); lerf = least relevant first
FILLS = ("road", "black")
MIN_INTERVAL_N = 5   # below this many images a mean is quoted without an interval, a star or a verdict
SATURATED = 0.95   # explained probability on the fully blurred image at or above which an image is saturated


def step_counts(pixels: int, steps: int, fill: str, mode: str) -> np.ndarray:
    """Pixels changed after each step: 0 .. pixels (steps + 1 points), or 0 .. (steps-1)/steps of them under ROAD
    removal, which needs known pixels left to impute from."""
    last = steps - 1 if fill == "road" and mode != "insertion" else steps
    return (np.arange(last + 1) * pixels) // steps


def perturbation_curves(model: nn.Module, images: torch.Tensor, ranks: np.ndarray, targets: np.ndarray,
                        mode: str, steps: int = 64, batch_size: int = 8, blur: float = 1 / 16,
                        channels_last: bool = True, fill: str = "black",
                        noise: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deletion (MoRF), LeRF or insertion curves: (x = fraction of pixels changed, probs N x len(x)).

    `ranks` is N x (H*W) from pixel_ranks; LeRF removes the lowest-ranked pixels first. Removal fills with black or
    with ROAD's noisy linear imputation (`noise`: N x C x H x W, added to the imputed pixels); insertion starts from a
    Gaussian blur with sigma = `blur` x the image side. Every perturbed copy of every image goes through the model in
    batches of `batch_size` under inference mode, as channels_last input by default.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    n, _, h, w = images.shape
    ranks = np.asarray(ranks).reshape(n, h, w)
    if mode == "lerf":
        ranks = h * w - 1 - ranks
    counts = step_counts(h * w, steps, fill, mode)
    insert = mode == "insertion"
    start = imageops.blurred(images, blur) if insert else torch.zeros_like(images)
    road_noise = None if insert or fill == "black" else (torch.zeros_like(images) if noise is None else noise)
    probs = perturbed_probs(model, images, ranks, targets, counts, start, insert=insert, batch_size=batch_size,
                            channels_last=channels_last, road_noise=road_noise)
    return counts / (h * w), probs


def changed_pixels(ranks: torch.Tensor, counts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B x 1 x H x W bool: each row's units ranked below its count (ranks B x h x w), upsampled to size by nearest."""
    changed = (ranks < counts.view(-1, 1, 1))[:, None]
    if changed.shape[-2:] == size:
        return changed
    return F.interpolate(changed.float(), size=size, mode="nearest") > 0


IMPUTE_CHUNK = 32   # perturbed copies imputed per batched fill (the fill's cost is mostly per call)


def perturbed_probs(model: nn.Module, images: torch.Tensor, ranks: np.ndarray, targets: np.ndarray,
                    counts: np.ndarray, start: torch.Tensor, *, insert: bool = False, batch_size: int = 8,
                    channels_last: bool = True, pad: bool = False,
                    road_noise: torch.Tensor | None = None) -> np.ndarray:
    """Target-class softmax probabilities (N x len(counts), float64) once each image's counts[k] top-ranked units
    changed: deletion pastes `start` over them (or, given `road_noise`, imputes them by ROAD), insertion pastes
    them onto `start`.

    `ranks` is N x h x w over units (0 = changed first): the pixels, or grid cells upsampled by nearest. The (image,
    count) pairs run image-major through the model in batches of `batch_size` under inference mode, as channels_last
    input by default; `pad` fills the last batch with black images, so every call has exactly batch_size rows.
    """
    n, _, h, w = images.shape
    ranks_t = torch.as_tensor(np.asarray(ranks), dtype=torch.int64)
    counts_t = torch.as_tensor(np.asarray(counts), dtype=torch.int64)
    pairs = np.stack(np.meshgrid(np.arange(n), np.arange(len(counts_t)), indexing="ij"), -1).reshape(-1, 2)
    chunk = max(batch_size, IMPUTE_CHUNK) // batch_size * batch_size if road_noise is not None else batch_size
    probs = np.empty(len(pairs), dtype=np.float64)
    with torch.inference_mode():
        for c in range(0, len(pairs), chunk):
            img_idx = torch.as_tensor(pairs[c:c + chunk, 0])
            changed = changed_pixels(ranks_t[img_idx], counts_t[torch.as_tensor(pairs[c:c + chunk, 1])], (h, w))
            if road_noise is not None:
                x = road.impute(images[img_idx], changed, road_noise[img_idx]).to(images.dtype)
            elif insert:
                x = torch.where(changed, images[img_idx], start[img_idx])
            else:
                x = torch.where(changed, start[img_idx], images[img_idx])
            probs[c:c + len(x)] = _forward_probs(model, x, np.asarray(targets)[img_idx.numpy()], batch_size,
                                                 channels_last, pad)
    return probs.reshape(n, len(counts_t))


def _forward_probs(model: nn.Module, x: torch.Tensor, targets: np.ndarray, batch_size: int, channels_last: bool,
                   pad: bool) -> np.ndarray:
    """Target-class softmax probabilities of x in batches of batch_size (the last padded with black when `pad`)."""
    device = device_of(model)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = np.empty(len(x), dtype=np.float64)
    for b in range(0, len(x), batch_size):
        xb = x[b:b + batch_size]
        real = len(xb)
        if pad and real < batch_size:
            xb = torch.cat([xb, xb.new_zeros((batch_size - real, *xb.shape[1:]))])
        p = torch.softmax(model(xb.to(device).contiguous(memory_format=fmt)).float(), 1)
        out[b:b + real] = p[torch.arange(real), torch.as_tensor(targets[b:b + real])].cpu().numpy()
    return out


def noise_fields(shape: tuple[int, ...], seeds: list[int], sigma: float) -> torch.Tensor:
    """ROAD's per-image Gaussian noise fields (std `sigma` of the pixel range), one seeded generator per image."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]) * sigma


def saturated(blur_probs: np.ndarray, threshold: float = SATURATED) -> np.ndarray:
    """Images whose explained probability on the fully blurred image (insertion's start) is >= threshold."""
    return np.asarray(blur_probs, dtype=np.float64) >= threshold


def auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Trapezoid-rule area under curve(s) y (last axis) over x, divided by x's range (the curve's mean height; the
    plain area when x spans [0, 1])."""
    return np.trapezoid(y, x, axis=-1) / (x[-1] - x[0])


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
    where row k holds the maps after re-initialising every parameterised module from the output down to layers[k]
    (every module in turn up to FULL_CASCADE_LAYERS of them, else CASCADE_STEPS stops: cascade_stops).
    """
    path = _module_path(model, net)
    work = copy.deepcopy(model).eval()
    work_net = work.get_submodule(path) if path else work
    modules = dict(work_net.named_modules())
    top_down = parameterised_modules(work, work_net, images[:1].to(device_of(model)))[::-1]
    stops = cascade_stops(len(top_down))
    maps = {m: [np.asarray(fn(work, images, targets), dtype=np.float32)] for m, fn in methods.items()}
    done = 0
    for stop in stops:   # re-initialise every layer down to the stop, then recompute the maps
        for k in range(done, stop + 1):
            reinitialise(modules[top_down[k]], int(np.random.default_rng([seed, k + 1]).integers(0, 2 ** 62)))
        done = stop + 1
        for method, fn in methods.items():
            maps[method].append(np.asarray(fn(work, images, targets), dtype=np.float32))
    out_maps = {m: np.stack(v) for m, v in maps.items()}
    corr = {m: np.array([[spearman(v[0, i], v[k, i]) for i in range(v.shape[1])] for k in range(len(v))])
            for m, v in out_maps.items()}
    return {"layers": ["original"] + [top_down[k] for k in stops], "maps": out_maps, "spearman": corr}


def cascade_stops(n_layers: int) -> list[int]:
    """Top-down indices of the layers after which the cascade recomputes the maps.

    Every layer up to FULL_CASCADE_LAYERS; above that CASCADE_STEPS stops spaced evenly from the output layer
    (index 0) to the first layer (index n_layers - 1), each re-initialising every layer above it as well.
    """
    if n_layers <= FULL_CASCADE_LAYERS:
        return list(range(n_layers))
    return sorted(set(np.linspace(0, n_layers - 1, CASCADE_STEPS).round().astype(int).tolist()))


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
