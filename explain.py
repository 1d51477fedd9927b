"""The one entry point: `attribute(model, images, target, method=...)` for every attribution method, and the trust
scores (deletion/insertion, the sanity check, ground truth) in the same call shape.

    from explain import attribute, deletion_insertion
    att = attribute(model, images, target="pred", method="integrated_gradients", steps=32)
    att.maps            # N x H x W float32, raw, in the model's input pixel space
    att.gaps            # IG's completeness gap per image
    deletion_insertion(model, images, att.targets, att).insertion_auc

`model` is any nn.Module that takes `images` as given (N x C x H x W floats) and returns logits (a tensor, a
tuple/list whose first item is the logits, a dict with 'logits', or an object with `.logits`); put it in eval mode.
Our pipeline wraps the user's network in `model.Preprocess`, so it takes [0,1] RGB and normalises inside; a user
may do the same (`Preprocess(net, mean, std)`) or pass a model that expects normalised input. Forward-only
methods (lime, occlusion, shap) and deletion/insertion score softmax probabilities; gradient methods use logits.

A method is one function `fn(model, images, targets, *, batch_size, seed, keys, **options) -> Attribution` and one
`register(Method(...))`; the pipeline's tasks, the comparison grid and every trust metric iterate `METHODS`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

import fastpath
import imageops
import methods  # noqa: F401 (importing it registers the built-in methods)
import metrics
import saliency
import seeds
import settings
from attribution import METHODS, Attribution, Method, NoBar, progress_bar, register  # noqa: F401 (re-exported)
from errors import ExplainInputError
from model import Autocast, as_classifier, device_of, user_net  # noqa: F401 (re-exported)


# Gradient methods that run in bf16 under precision "bf16": SmoothGrad keeps r >= 0.999 against fp32 with the same
# noise (another noise draw gives 0.988-0.994) at ~1.6x the speed; IG drops to r 0.81-0.96, so it stays fp32.
BF16_GRADIENTS = ("smoothgrad",)


def get_method(name: str) -> Method:
    """A registered method by name; an unknown name lists the known ones."""
    if name not in METHODS:
        raise ExplainInputError(f"unknown method {name!r}; methods: {', '.join(METHODS)}")
    return METHODS[name]


def method_names() -> list[str]:
    """Every registered method, in registry (comparison-grid) order."""
    return list(METHODS)


def method_options(name: str, settings: dict[str, Any], sanity: bool = False) -> dict[str, Any]:
    """A method's options taken from the pipeline's resolved settings (the sanity check's own counts when asked)."""
    m = get_method(name)
    keys = m.settings | (m.sanity if sanity else {})
    return {opt: settings[key] for opt, key in keys.items() if key in settings}


# ---------------------------------------------------------------- input handling

def as_images(images: Any) -> torch.Tensor:
    """Images as an N x 3 x H x W float tensor in [0,1] on the CPU (a single 3 x H x W image becomes a batch of one);
    any other shape, dtype or range is an ExplainInputError."""
    try:
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    except (TypeError, ValueError, RuntimeError):
        raise ExplainInputError(f"images must be a tensor or array of N x 3 x H x W floats, got "
                                f"{type(images).__name__}") from None
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] == 0 or x.shape[1] != 3:
        raise ExplainInputError(f"images must be N x 3 x H x W RGB (N >= 1), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ExplainInputError(f"images must be floats in [0,1], got {x.dtype}: divide 0..255 images by 255")
    x = x.detach().float().cpu()
    if not torch.isfinite(x).all():
        raise ExplainInputError("images hold NaN or inf values; they must be finite floats in [0,1]")
    if x.max() > 1 or x.min() < 0:
        hint = ": divide 0..255 images by 255" if x.max() > 1 else ""
        raise ExplainInputError(f"images must lie in [0,1], got values in [{float(x.min()):g}, {float(x.max()):g}]"
                                f"{hint}")
    return x


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 4) -> np.ndarray:
    """Softmax probabilities of a batch, in chunks, under inference mode."""
    device = device_of(model)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            out.append(torch.softmax(model(images[i:i + batch_size].to(device)).float(), 1).cpu())
    return torch.cat(out).numpy()


def as_targets(target: Any, n: int, preds: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """Target classes as N int64: an int broadcasts, a sequence/tensor must have N entries, 'pred' = the argmax."""
    if isinstance(target, str):
        if target != "pred" or preds is None:
            raise ExplainInputError(f"target must be an int, a sequence of ints, a tensor or 'pred', got {target!r}")
        return np.asarray(preds(), dtype=np.int64)
    t = np.asarray(target.detach().cpu() if isinstance(target, torch.Tensor) else target)
    if t.dtype == bool or not (np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.floating)):
        raise ExplainInputError(f"target must be an int, a sequence of ints, a tensor or 'pred', got {target!r}")
    if t.ndim == 0:
        t = np.full(n, t)
    t = t.reshape(-1)
    if not np.issubdtype(t.dtype, np.integer):
        if not np.all(np.isfinite(t)) or not np.all(np.mod(t, 1) == 0):
            raise ExplainInputError(f"targets must be class indices (integers), got {t.dtype} values")
    if len(t) != n:
        raise ExplainInputError(f"{len(t)} targets for {n} images: give one target per image, or one int for all")
    return t.astype(np.int64)


def _check_targets(targets: np.ndarray, num_classes: int) -> None:
    """Every target is a valid class index of the model's output."""
    bad = targets[(targets < 0) | (targets >= num_classes)]
    if len(bad):
        raise ExplainInputError(f"target {int(bad[0])} out of range: the model has {num_classes} classes "
                                f"(0..{num_classes - 1})")


def default_batch_size(device: torch.device, forward_only: bool) -> int:
    """The pipeline's fixed batch size for the device type (settings.py)."""
    s = settings.resolve(device.type)
    return int(s["batch_size"] if forward_only else s["grad_batch_size"])


def _count(value: Any, name: str) -> int:
    """A whole number >= 1 (a batch size, a sample count, steps); anything else is an ExplainInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ExplainInputError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def as_batch_size(batch_size: Any, device: torch.device, forward_only: bool) -> int:
    """batch_size as given (a whole number >= 1), or the device's default when None."""
    if batch_size is None:
        return default_batch_size(device, forward_only)
    return _count(batch_size, "batch_size")


def as_seed(seed: Any) -> int:
    """A seed: a whole number >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ExplainInputError(f"seed must be a whole number >= 0, got {seed!r}")
    return int(seed)


def as_device(device: Any, net: nn.Module) -> torch.device:
    """The device to run on: as given (cpu, cuda, cuda:N, a torch.device), else the model's."""
    if device is None:
        return device_of(net)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ExplainInputError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ExplainInputError(f"device {device!r}: CUDA is not available on this machine")
    return dev


def check_options(m: Method, options: dict[str, Any]) -> None:
    """Options the method has, with whole numbers >= 1 where its default is a count."""
    unknown = sorted(set(options) - set(m.defaults))
    if unknown:
        raise ExplainInputError(f"{m.name} has no option {unknown[0]!r}; its options: "
                                f"{', '.join(m.defaults) or 'none'}")
    for key, value in options.items():
        default = m.defaults[key]
        if isinstance(default, int) and not isinstance(default, bool):
            _count(value, f"{m.name} option {key}")


# ---------------------------------------------------------------- the entry point

def attribute(model: nn.Module, images: Any, target: Any = "pred", method: str = "vanilla", *,
              batch_size: int | None = None, seed: int = 0, keys: Sequence[Any] | None = None,
              precision: str = "fp32", device: torch.device | str | None = None, progress: str | None = None,
              noise_tunnel: dict[str, Any] | None = None, **options: Any) -> Attribution:
    """Explain `images` for `target` with one method; every option has a default (see `METHODS[method].defaults`).

    batch_size: images per model call; seed and keys: the random steps (keys[i] identifies image i, default its
    position, so an image's noise or samples do not depend on the rest of the batch); precision 'bf16' runs the
    forward-only methods and SmoothGrad's gradients (BF16_GRADIENTS) under bf16, the other gradient methods in fp32
    (IG's maps lose accuracy in bf16, SmoothGrad's keep r >= 0.999 against fp32 with the same noise); device: move
    the images there (default: the model's device); progress: a label for one tqdm bar on stderr (silent when not a
    terminal); noise_tunnel: {"n": copies, "sigma": noise std as a fraction of each image's value range} averages a
    gradient method's maps over noisy copies of each image (SmoothGrad is the tunnel over vanilla).
    """
    m = get_method(method)
    check_options(m, options)
    if precision not in ("fp32", "bf16"):
        raise ExplainInputError(f"precision must be fp32 or bf16, got {precision!r}")
    net = as_classifier(model)
    dev = as_device(device, net)
    x = as_images(images)
    n = len(x)
    bs = as_batch_size(batch_size, dev, m.forward_only)
    seed = as_seed(seed)
    run_precision = precision if m.forward_only or m.name in BF16_GRADIENTS else "fp32"
    run = fast_model(net, dev, run_precision, m.forward_only) if not m.hooks else net
    probs: list[np.ndarray] = []

    def preds() -> np.ndarray:
        if not probs:
            probs.append(predict(net, x, bs))
        return probs[0].argmax(1)

    targets = as_targets(target, n, preds)
    with torch.no_grad():
        num_classes = int(net(x[:1].to(dev)).shape[1])
    _check_targets(targets, num_classes)
    keys = list(range(n)) if keys is None else list(keys)
    if len(keys) != n:
        raise ExplainInputError(f"{len(keys)} keys for {n} images")
    opts = m.defaults | options
    with progress_bar(progress) as bar:
        if noise_tunnel is not None:
            return _tunnel(m, run, x, targets, noise_tunnel, bs, int(seed), keys, bar, opts)
        out = m.fn(run, x, torch.as_tensor(targets), batch_size=bs, seed=int(seed),
                   keys=keys, progress=bar, **opts)
    out.options = opts
    return out


def _tunnel(m: Method, model: nn.Module, x: torch.Tensor, targets: np.ndarray, tunnel: dict[str, Any], bs: int,
            seed: int, keys: list, bar: Any, opts: dict[str, Any]) -> Attribution:
    """A gradient method's maps averaged over noisy copies of each image (the noise tunnel)."""
    if m.forward_only:
        raise ExplainInputError(f"the noise tunnel composes over gradient methods; {m.name} runs forward passes only")
    unknown = sorted(set(tunnel) - {"n", "sigma"})
    if unknown or "n" not in tunnel or "sigma" not in tunnel:
        raise ExplainInputError(f"noise_tunnel takes {{'n': copies, 'sigma': fraction of the value range}}, "
                                f"got {tunnel!r}")
    if m.name == "gradcam" and opts.get("layer") is None:   # resolve the default layer once, not per copy
        opts = opts | {"layer": saliency.default_gradcam_layer(user_net(model), x.shape[-1])}

    def one(mdl: nn.Module, copies: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        return m.fn(mdl, copies, t, batch_size=bs, seed=seed, keys=list(range(len(copies))), progress=NoBar(),
                    **opts).maps

    maps = saliency.noise_tunnel(one, model, x, targets, n=_count(tunnel["n"], "noise_tunnel n"),
                                 sigma=float(tunnel["sigma"]),
                                 seed=seed, batch_size=bs, keys=keys, progress=bar)
    layer = opts.get("layer") if isinstance(opts.get("layer"), str) else None
    return Attribution(m.name, maps, targets, options=opts | {"noise_tunnel": dict(tunnel)},
                       sigma=float(tunnel["sigma"]), layer=layer)


def fast_model(net: nn.Module, device: torch.device, precision: str, forward_only: bool) -> nn.Module:
    """The fastest path that computes what `net` computes (fastpath.py, chosen by measurement): forward-only bf16
    passes get bf16-stored weights (bitwise Autocast's outputs); gradients get the BatchNorms folded into the
    convolutions (maps r >= 0.9999 against eager), under bf16 autocast when precision is bf16. A model whose
    BatchNorm or dropout is in training mode runs as given."""
    try:
        if forward_only and precision == "bf16":
            return fastpath.fast_bf16(net, device)
        run = folded(net)
    except (copy.Error, TypeError, RuntimeError, AttributeError):  # a model that cannot be copied runs as given
        run = net
    return Autocast(run, device) if precision == "bf16" else run


def folded(net: nn.Module) -> nn.Module:
    """fastpath.fast_fp32's copy of `net` (in its memory format); `net` itself when it has no 4-D kernels or a
    BatchNorm or dropout in training mode."""
    kernels = [p for p in net.parameters() if p.dim() == 4]
    if not kernels or any(mod.training for mod in net.modules()
                          if isinstance(mod, (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd))):
        return net
    return fastpath.fast_fp32(net, channels_last=kernels[0].is_contiguous(memory_format=torch.channels_last))


# ---------------------------------------------------------------- trust, same call shape

@dataclass
class Faithfulness:
    """Removal (ROAD or black fill, MoRF or LeRF order) and insertion curves of one method's maps."""

    x: np.ndarray                  # fractions of pixels removed: 0 .. (steps-1)/steps (ROAD) or 0 .. 1 (black)
    deletion: np.ndarray           # N x len(x) probability of the target class as pixels are removed
    insertion: np.ndarray          # N x (steps + 1) as pixels are pasted onto a blurred copy
    deletion_auc: np.ndarray       # N: the removal curve's mean height
    insertion_auc: np.ndarray      # N
    insertion_x: np.ndarray        # steps + 1 fractions of pixels inserted, 0..1
    saturated: np.ndarray          # N bool: p(target) >= metrics.SATURATED on the fully blurred image
    blur_probability: np.ndarray   # N: p(target) on the fully blurred image (insertion's start)
    fill: str                      # "road" or "black"
    order: str                     # "morf" (most relevant first) or "lerf"


@dataclass
class Stability:
    """How far two seeds of one method agree on each image (metrics.stability)."""

    method: str
    seeds: tuple[int, int]
    spearman: np.ndarray           # N: Spearman correlation of the two maps' values
    iou_top: np.ndarray            # N: intersection over union of their top `top` share of pixels
    top: float


@dataclass
class GroundTruth:
    """Ground-truth scores of one method's maps against object masks (images with an empty mask are left out)."""

    kept: np.ndarray               # indices of the images scored
    pointing_game: np.ndarray
    mass_in_mask: np.ndarray
    mass_in_mask_ratio: np.ndarray  # mass_in_mask / the mask's share of the image


@dataclass
class Sanity:
    """The cascading randomisation check (Adebayo et al. 2018) of one method."""

    method: str
    layers: list[str]              # "original", then each re-initialised module from the output down
    maps: np.ndarray               # steps x N x H x W
    spearman: np.ndarray           # steps x N: rank correlation of |map| with the trained model's |map|


def _resolve(model: nn.Module, images: torch.Tensor, target: Any, attribution: Any, seed: int,
             keys: Sequence[Any] | None, batch_size: int | None, precision: str) -> Attribution:
    """An Attribution as given, a method name computed now, or raw maps wrapped."""
    if isinstance(attribution, Attribution):
        return attribution
    if isinstance(attribution, str):
        return attribute(model, images, target, attribution, seed=seed, keys=keys, batch_size=batch_size,
                         precision=precision)
    maps = np.asarray(attribution, dtype=np.float32)
    targets = as_targets(target, len(images), lambda: predict(as_classifier(model), images).argmax(1))
    return Attribution("maps", maps, targets)


ORDERS = {"morf": "deletion", "lerf": "lerf"}   # removal order -> metrics' curve mode


def deletion_insertion(model: nn.Module, images: Any, target: Any, attribution: Attribution | str | np.ndarray, *,
                       steps: int | None = None, batch_size: int | None = None, blur: float | None = None,
                       fill: str | None = None, order: str = "morf", noise: float | None = None, seed: int = 0,
                       keys: Sequence[Any] | None = None, precision: str = "fp32") -> Faithfulness:
    """Removal and insertion AUCs of an attribution (or a method name, computed with its defaults), with each
    image's saturation flag. `fill` is "road" (noisy linear imputation) or "black", `order` "morf" or "lerf";
    steps, blur, fill and noise default to the settings' deletion_steps, insertion_blur, deletion_fill, road_noise."""
    x = as_images(images)
    att = _resolve(model, x, target, attribution, seed, keys, batch_size, precision)
    if att.maps.shape[0] != len(x):
        raise ExplainInputError(f"{att.maps.shape[0]} maps for {len(x)} images")
    defaults = settings.resolve(device_of(as_classifier(model)).type)
    steps = int(defaults["deletion_steps"] if steps is None else steps)
    blur = float(defaults["insertion_blur"] if blur is None else blur)
    fill = str(defaults["deletion_fill"] if fill is None else fill)
    sigma = float(defaults["road_noise"] if noise is None else noise)
    if steps < 1 + (fill == "road"):
        raise ExplainInputError(f"steps must be at least {1 + (fill == 'road')} with fill {fill!r}, got {steps}")
    if fill not in metrics.FILLS:
        raise ExplainInputError(f"fill must be one of {', '.join(metrics.FILLS)}, got {fill!r}")
    if order not in ORDERS:
        raise ExplainInputError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    net = as_classifier(model)
    dev = device_of(net)
    run = fast_model(net, dev, precision, True)
    keys = list(range(len(x))) if keys is None else list(keys)
    maps = imageops.fit_maps(att.maps, x.shape[-2], x.shape[-1])
    ranks = np.stack([metrics.pixel_ranks(m, _rng(seed, "trust", "ties", k)) for m, k in zip(maps, keys)])
    fields = metrics.noise_fields(tuple(x.shape[1:]), [int(_rng(seed, "road-noise", k).integers(0, 2 ** 62))
                                                       for k in keys], sigma)
    bs = as_batch_size(batch_size, dev, True)
    xs, curves = {}, {}
    for mode in (ORDERS[order], "insertion"):
        xs[mode], curves[mode] = metrics.perturbation_curves(run, x, ranks, att.targets, mode, steps, bs, blur,
                                                             fill=fill, noise=fields)
    removal = ORDERS[order]
    start = curves["insertion"][:, 0]
    return Faithfulness(xs[removal], curves[removal], curves["insertion"], metrics.auc(xs[removal], curves[removal]),
                        metrics.auc(xs["insertion"], curves["insertion"]), xs["insertion"], metrics.saturated(start),
                        start, fill, order)


def stability(model: nn.Module, images: Any, target: Any, method: str, *, seeds: tuple[int, int] = (0, 1),
              top: float = 0.05, keys: Sequence[Any] | None = None, batch_size: int | None = None,
              precision: str = "fp32", **options: Any) -> Stability:
    """The maps of `method` under two seeds compared per image: Spearman correlation and top-`top` overlap (IoU)."""
    if len(seeds) != 2:
        raise ExplainInputError(f"seeds must be two seeds, got {seeds!r}")
    a, b = (attribute(model, images, target, method, seed=int(sd), keys=keys, batch_size=batch_size,
                      precision=precision, **options).maps for sd in seeds)
    pairs = np.array([metrics.stability(ma, mb, top) for ma, mb in zip(a, b)]).reshape(-1, 2)
    return Stability(method, (int(seeds[0]), int(seeds[1])), pairs[:, 0], pairs[:, 1], top)


def ground_truth(model: nn.Module, images: Any, target: Any, masks: Any, attribution: Attribution | str | np.ndarray,
                 *, seed: int = 0, keys: Sequence[Any] | None = None, batch_size: int | None = None,
                 precision: str = "fp32") -> GroundTruth:
    """Pointing game and mass in mask of an attribution's positive part against N x H x W object masks."""
    x = as_images(images)
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != (len(x), x.shape[-2], x.shape[-1]):
        raise ExplainInputError(f"masks must be N x H x W = {(len(x), x.shape[-2], x.shape[-1])}, got {masks.shape}")
    att = _resolve(model, x, target, attribution, seed, keys, batch_size, precision)
    maps = imageops.fit_maps(att.maps, x.shape[-2], x.shape[-1])
    kept = np.array([i for i in range(len(x)) if masks[i].any()], dtype=np.int64)
    pg = np.array([metrics.pointing_game(maps[i], masks[i]) for i in kept])
    mim = np.array([metrics.mass_in_mask(maps[i], masks[i]) for i in kept])
    ratio = mim / np.array([masks[i].mean() for i in kept]) if len(kept) else mim
    return GroundTruth(kept, pg, mim, ratio)


def sanity_check(model: nn.Module, images: Any, target: Any, method: Attribution | str | Sequence[str], *,
                 seed: int = 0, keys: Sequence[Any] | None = None, batch_size: int | None = None,
                 **options: Any) -> Sanity | dict[str, Sanity]:
    """Cascading randomisation of the model's parameterised layers from the output down, on a copy of the model.

    `method` is a method name (options as in `attribute`), an Attribution (its method and options are reused) or
    several names (one cascade serves them all; returns {name: Sanity}).
    """
    x = as_images(images)
    if isinstance(method, Attribution):
        names, opts = [method.method], {method.method: method.options}
    elif isinstance(method, str):
        names, opts = [method], {method: options}
    else:
        names, opts = list(method), {m: options.get(m, {}) for m in method}
    for m in names:
        if get_method(m).forward_only:
            raise ExplainInputError(f"the sanity check covers gradient methods; {m} runs forward passes only")
    net = as_classifier(model)
    targets = as_targets(target, len(x), lambda: predict(net, x).argmax(1))
    fns = {m: (lambda mdl, xx, tt, m=m: attribute(mdl, xx, tt, m, seed=seed, keys=keys, batch_size=batch_size,
                                                  **opts[m]).maps) for m in names}
    res = metrics.cascade(net, user_net(net), x, targets, fns, seed)
    out = {m: Sanity(m, res["layers"], res["maps"][m], res["spearman"][m]) for m in names}
    return out[names[0]] if isinstance(method, (str, Attribution)) else out


def _rng(seed: int, *keys: Any) -> np.random.Generator:
    """A seeded generator for (seed, keys)."""
    return seeds.rng(seed, *keys)
