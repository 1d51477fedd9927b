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

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from errors import ExplainInputError
from model import Autocast, logits_of
from model import device_of as model_device  # one device rule for the whole project


@dataclass
class Attribution:
    """One method's maps for a batch of images, with the method's own extras."""

    method: str
    maps: np.ndarray                       # N x H x W float32, raw values (sign kept where the method has one)
    targets: np.ndarray                    # N int64: the class each map explains
    options: dict[str, Any] = field(default_factory=dict)   # the options used, defaults filled in
    gaps: np.ndarray | None = None         # integrated_gradients: |sum attr - (F(x) - F(x'))| / |F(x) - F(x')|
    sigma: float | None = None             # smoothgrad: noise std as a fraction of each image's value range
    layer: str | None = None               # gradcam: the layer's module name
    segments: np.ndarray | None = None     # lime, shap: N x H x W int32 superpixel ids
    local_fit: np.ndarray | None = None    # lime: R^2 of the explained class's local linear fit
    base_values: np.ndarray | None = None  # shap: f(fully masked image) for the explained class
    explanations: list | None = None       # lime: lime's ImageExplanation objects (for drawing)


MethodFn = Callable[..., Attribution]


@dataclass(frozen=True)
class Method:
    """A registered attribution method."""

    name: str
    title: str
    fn: MethodFn
    forward_only: bool                     # True: runs forward passes only (bf16-eligible), scores probabilities
    defaults: dict[str, Any]               # every option with its default
    settings: dict[str, str] = field(default_factory=dict)   # option -> key of the pipeline's settings
    sanity: dict[str, str] = field(default_factory=dict)     # option -> settings key used by the sanity check
    signed: bool = False                   # maps carry a sign (evidence for / against)
    batch_setting: str | None = None       # settings key of its batch size (default: batch_size / grad_batch_size)

    @property
    def batch_key(self) -> str:
        """The settings key of this method's batch size in the pipeline."""
        return self.batch_setting or ("batch_size" if self.forward_only else "grad_batch_size")


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (the pipeline and every trust metric pick it up)."""
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """A registered method by name; an unknown name lists the known ones."""
    _load_builtin()
    if name not in METHODS:
        raise ExplainInputError(f"unknown method {name!r}; methods: {', '.join(METHODS)}")
    return METHODS[name]


def method_names() -> list[str]:
    """Every registered method, in registry (comparison-grid) order."""
    _load_builtin()
    return list(METHODS)


def _load_builtin() -> None:
    """Import the modules that register the built-in methods (once; they register on import)."""
    import methods  # noqa: F401


def method_options(name: str, settings: dict[str, Any], sanity: bool = False) -> dict[str, Any]:
    """A method's options taken from the pipeline's resolved settings (the sanity check's own counts when asked)."""
    m = get_method(name)
    keys = m.settings | (m.sanity if sanity else {})
    return {opt: settings[key] for opt, key in keys.items() if key in settings}


# ---------------------------------------------------------------- input handling

class Logits(nn.Module):
    """A model whose forward returns the logits tensor of any supported output form."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))


def as_classifier(model: nn.Module) -> nn.Module:
    """The model itself when it returns a tensor (our Preprocess does), else a Logits wrapper around it."""
    from model import Preprocess

    if not isinstance(model, nn.Module):
        raise ExplainInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model if isinstance(model, (Preprocess, Logits, Autocast)) else Logits(model)


def user_net(model: nn.Module) -> nn.Module:
    """The network whose module names layers refer to: inside our wrappers, the user's own network."""
    from model import Preprocess

    while isinstance(model, (Logits, Autocast, Preprocess)):
        model = model.net if isinstance(model, Preprocess) else model.model
    return model


def as_images(images: Any) -> torch.Tensor:
    """Images as an N x C x H x W float tensor on the CPU (a single C x H x W image becomes a batch of one)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] == 0:
        raise ExplainInputError(f"images must be N x C x H x W (N >= 1), got shape {tuple(x.shape)}")
    return x.detach().float().cpu()


def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 4) -> np.ndarray:
    """Softmax probabilities of a batch, in chunks, under inference mode."""
    device = model_device(model)
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
    if t.ndim == 0:
        t = np.full(n, int(t))
    t = t.reshape(-1)
    if not np.issubdtype(t.dtype, np.integer):
        if not np.all(np.mod(t, 1) == 0):
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
    import settings

    s = settings.resolve(device.type)
    return int(s["batch_size"] if forward_only else s["grad_batch_size"])


# ---------------------------------------------------------------- the entry point

def attribute(model: nn.Module, images: Any, target: Any = "pred", method: str = "vanilla", *,
              batch_size: int | None = None, seed: int = 0, keys: Sequence[Any] | None = None,
              precision: str = "fp32", device: torch.device | str | None = None, progress: str | None = None,
              **options: Any) -> Attribution:
    """Explain `images` for `target` with one method; every option has a default (see `METHODS[method].defaults`).

    batch_size: images per model call; seed and keys: the random steps (keys[i] identifies image i, default its
    position, so an image's noise or samples do not depend on the rest of the batch); precision 'bf16' runs the
    forward-only methods under bf16 autocast (gradient methods always run fp32); device: move the images there
    (default: the model's device); progress: a label for one tqdm bar on stderr (silent when not a terminal).
    """
    m = get_method(method)
    unknown = sorted(set(options) - set(m.defaults))
    if unknown:
        raise ExplainInputError(f"{method} has no option {unknown[0]!r}; its options: "
                                f"{', '.join(m.defaults) or 'none'}")
    if precision not in ("fp32", "bf16"):
        raise ExplainInputError(f"precision must be fp32 or bf16, got {precision!r}")
    net = as_classifier(model)
    dev = torch.device(device) if device is not None else model_device(net)
    x = as_images(images)
    n = len(x)
    bs = int(batch_size or default_batch_size(dev, m.forward_only))
    if bs < 1:
        raise ExplainInputError(f"batch_size must be at least 1, got {bs}")
    run = Autocast(net, dev) if precision == "bf16" and m.forward_only else net
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
    with _bar(progress) as bar:
        out = m.fn(run, x, torch.as_tensor(targets), batch_size=bs, seed=int(seed),
                   keys=keys, progress=bar, **opts)
    out.options = opts
    return out


class NoBar:
    """A progress bar that shows nothing."""

    def reset(self, total: int | None = None) -> None:
        """Nothing to reset."""

    def update(self, n: int = 1) -> None:
        """Nothing to show."""


@contextmanager
def _bar(label: str | None) -> Iterator[Any]:
    """One tqdm bar labelled `label` (methods set its total), or a silent stand-in."""
    if label is None:
        yield NoBar()
        return
    from tqdm import tqdm

    with tqdm(desc=label, unit="pass", leave=False, disable=None) as bar:
        yield bar


# ---------------------------------------------------------------- trust, same call shape

@dataclass
class Faithfulness:
    """Deletion and insertion curves (Petsiuk et al. 2018) of one method's maps."""

    x: np.ndarray                  # steps + 1 fractions of pixels changed, 0..1
    deletion: np.ndarray           # N x (steps + 1) probability of the target class as pixels are set to 0
    insertion: np.ndarray          # N x (steps + 1) as pixels are pasted onto a blurred copy
    deletion_auc: np.ndarray       # N
    insertion_auc: np.ndarray      # N


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


def deletion_insertion(model: nn.Module, images: Any, target: Any, attribution: Attribution | str | np.ndarray, *,
                       steps: int = 32, batch_size: int | None = None, blur: float = 1 / 16, seed: int = 0,
                       keys: Sequence[Any] | None = None, precision: str = "fp32") -> Faithfulness:
    """Deletion and insertion AUCs of an attribution (or a method name, computed with its defaults)."""
    import metrics

    x = as_images(images)
    att = _resolve(model, x, target, attribution, seed, keys, batch_size, precision)
    if att.maps.shape[0] != len(x):
        raise ExplainInputError(f"{att.maps.shape[0]} maps for {len(x)} images")
    if steps < 1:
        raise ExplainInputError(f"steps must be at least 1, got {steps}")
    net = as_classifier(model)
    dev = model_device(net)
    run = Autocast(net, dev) if precision == "bf16" else net
    keys = list(range(len(x))) if keys is None else list(keys)
    maps = metrics.fit_maps(att.maps, x.shape[-2], x.shape[-1])
    ranks = np.stack([metrics.pixel_ranks(m, _rng(seed, "trust", "ties", k)) for m, k in zip(maps, keys)])
    bs = int(batch_size or default_batch_size(dev, True))
    curves = {}
    for mode in ("deletion", "insertion"):
        xs, curves[mode] = metrics.perturbation_curves(run, x, ranks, att.targets, mode, steps, bs, blur)
    return Faithfulness(xs, curves["deletion"], curves["insertion"], metrics.auc(xs, curves["deletion"]),
                        metrics.auc(xs, curves["insertion"]))


def ground_truth(model: nn.Module, images: Any, target: Any, masks: Any, attribution: Attribution | str | np.ndarray,
                 *, seed: int = 0, keys: Sequence[Any] | None = None, batch_size: int | None = None,
                 precision: str = "fp32") -> GroundTruth:
    """Pointing game and mass in mask of an attribution's positive part against N x H x W object masks."""
    import metrics

    x = as_images(images)
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != (len(x), x.shape[-2], x.shape[-1]):
        raise ExplainInputError(f"masks must be N x H x W = {(len(x), x.shape[-2], x.shape[-1])}, got {masks.shape}")
    att = _resolve(model, x, target, attribution, seed, keys, batch_size, precision)
    maps = metrics.fit_maps(att.maps, x.shape[-2], x.shape[-1])
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
    import metrics

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
    import seeds

    return seeds.rng(seed, *keys)
