"""SHAP (Lundberg & Lee 2017) with the shap package: the Partition explainer over an image blur masker, task `shap`.

What is explained: the softmax probability of the explained class (a model that returns logits is explained
through softmax, like LIME), on [0,1] RGB images, through `lime_explain.classifier` (the same batching and
bf16/fp32 path as LIME). Partition SHAP splits the image into a binary tree of axis-aligned rectangles (halving
the longer side down to single pixels, then the colour channels) and computes Owen values along it: with
`max_evals` model calls it refines the rectangles where the class probability changes most, and the credit of a
rectangle it does not refine is spread evenly over its pixels (shap's `lower_credit`). The map is shap's value
per (pixel, channel) summed over the channels: piecewise constant on rectangles, and it sums exactly to
f(x) - f(fully masked x), with f(fully masked x) returned as `base_values`.

Masker: `blur(k,k)` (cv2.blur, a k x k box filter, computed once per image). Hidden regions keep their local
mean colour but lose the shape and texture the object is recognised by, so "masked" stays close to the image
distribution (a grey or black fill is a strong object of its own); it costs one copy per evaluation, and it
works on [0,1] floats. shap's inpaint maskers cast the image to uint8 (so [0,1] images come out black) and run
cv2.inpaint for every evaluation. The default kernel is half the image side (64 px at 128 px).

Randomness: shap's only random draws are the tie-breakers `np.random.randn()` in the Partition explainer's
priority queue (`PartitionExplainer.owen`), from numpy's global generator; they decide the order in which equally
promising rectangles are refined, and so the map once the budget runs out. Each image runs under a global seed
derived from (seed, "shap", its key), and the caller's global state is restored afterwards, so an image's map
does not depend on the rest of the batch.

numba: shap decorates its tree and credit helpers with numba's JIT, which costs 15-20 s of compiling in every
process (measured here) against about 1 s per image of running them as plain Python (the same numbers: the maps
are identical). So when this module is the first to import shap, it imports it, and builds its maskers, with
numba's JIT switched off for that moment (numba.config.DISABLE_JIT, restored afterwards; numba itself is imported
first, so only shap's own helpers stay uncompiled). shap is imported only when computing: `import shap` also
imports matplotlib (without switching its backend).
"""
from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

import seeds
from errors import ExplainInputError
from attribution import Attribution
from records import ShapResult

UNIT = "SHAP value (probability)"



def default_masker(size: int) -> str:
    """shap's blur masker with a kernel of half the image side."""
    k = max(1, size // 2)
    return f"blur({k},{k})"


def check_masker(masker: str) -> str:
    """A shap blur masker string 'blur(k,k)' with positive ints, normalised (no spaces)."""
    m = re.fullmatch(r"\s*blur\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*", str(masker))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ExplainInputError(f"SHAP masker {masker!r}: use 'blur(k,k)' with positive kernel sizes (shap's inpainting "
                        "needs uint8 images and one cv2.inpaint per evaluation)")
    return f"blur({int(m.group(1))},{int(m.group(2))})"


@contextmanager
def numba_jit_off() -> Iterator[None]:
    """numba's JIT switched off for functions decorated (and typed lists made) inside the block."""
    import numba
    import numba.typed  # noqa: F401  (numba's own helpers are decorated before the switch)

    old = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        yield
    finally:
        numba.config.DISABLE_JIT = old


def import_shap() -> Any:
    """The shap module; when this is its first import in the process, with its numba helpers left uncompiled."""
    if "shap" not in sys.modules:
        with numba_jit_off():
            import shap  # noqa: F401
    return sys.modules["shap"]


def image_masker(spec: str, shape: tuple[int, int, int]) -> Any:
    """shap's Image masker for one spec and H x W x 3 shape (its partition tree costs about 0.5 s: one per call)."""
    shap = import_shap()
    with numba_jit_off():
        return shap.maskers.Image(spec, tuple(shape))


@contextmanager
def numpy_global_seed(seed: int) -> Iterator[None]:
    """Run a block under numpy's global generator seeded with seed, then restore the caller's state."""
    state = np.random.get_state()
    np.random.seed(seed % 2 ** 32)
    try:
        yield
    finally:
        np.random.set_state(state)


def image_seed(seed: int, key: int | str) -> int:
    """The global numpy seed of one image's Partition run: from the run seed and the image's key."""
    return seeds.seed_int(seed, "shap", key, bits=32)


def shap_attribution(model: nn.Module, images: torch.Tensor, targets: Sequence[int] | np.ndarray | torch.Tensor,
                     *, batch_size: int = 4, seed: int = 0, keys: Sequence[int | str] | None = None,
                     max_evals: int, masker: str | None, round_size: int,
                     progress: Any = None) -> Attribution:
    """Partition SHAP maps (N x H x W) of each image's target-class softmax probability, with base values.

    `model` takes N x 3 x H x W [0,1] images (already wrapped for the run's precision); `batch_size` is its forward
    batch; `round_size` is how many masked images shap asks for per round (it changes which rectangles are
    refined, so it is fixed, not a speed knob); `keys` are per-image seed identities (default 0..N-1);
    `progress` is an optional tqdm-like bar updated with every evaluated image.
    """
    from lime_explain import classifier

    if images.ndim != 4 or images.shape[1] != 3:
        raise ExplainInputError(f"SHAP needs N x 3 x H x W images, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    t = np.asarray(torch.as_tensor(np.asarray(targets)).reshape(-1), dtype=np.int64)
    keys = list(range(n)) if keys is None else list(keys)
    if len(t) != n or len(keys) != n:
        raise ExplainInputError(f"SHAP: {len(t)} targets and {len(keys)} keys for {n} images")
    if max_evals < 3 or round_size < 2:
        raise ExplainInputError(f"SHAP: max_evals ({max_evals}) must be at least 3 and round_size ({round_size}) at least 2")
    spec = check_masker(default_masker(min(h, w)) if masker in (None, "auto") else masker)
    fn = classifier(model, batch_size)
    if progress is not None:
        progress.reset(total=n * max_evals)

    def f(flat: np.ndarray) -> np.ndarray:
        """shap's flat rows -> NHWC images -> softmax probabilities."""
        if progress is not None:
            progress.update(len(flat))
        return fn(flat.reshape(len(flat), h, w, 3))

    shap = import_shap()
    m = image_masker(spec, (h, w, 3))
    explainer = shap.explainers.Partition(f, m)
    maps, base = [], []
    for img, target, key in zip(images, t, keys):
        # flat rows keep one array object per image, so the masker blurs it once (its cache is keyed by id(x));
        # the cache is cleared first so a new image can never reuse the previous one's blur
        m.last_xid, m._blur_value_cache = None, None
        flat = np.ascontiguousarray(img.detach().cpu().permute(1, 2, 0).numpy(), dtype=np.float32).reshape(1, -1)
        with numpy_global_seed(image_seed(seed, key)):
            e = explainer(flat, max_evals=max_evals, batch_size=round_size, outputs=np.array([target]),
                          silent=True)
        vals = np.asarray(e.values, dtype=np.float64).reshape(h, w, 3)
        maps.append(vals.sum(-1).astype(np.float32))
        base.append(float(np.asarray(e.base_values).reshape(-1)[0]))
    return Attribution("shap", np.stack(maps) if maps else np.zeros((0, h, w), np.float32), t,
                       {"max_evals": int(max_evals), "masker": spec, "round_size": int(round_size)},
                       base_values=np.asarray(base, np.float32))


# ---------------------------------------------------------------- task

def task_shap(ctx) -> ShapResult:
    """Partition SHAP of the selected images: arrays/shap.npz (maps + base_values) and shap.png."""
    import draw
    from outputs import save_maps

    r = ctx.attribute("shap")
    targets, preds, probs = r.targets, ctx.preds(), ctx.probs()
    max_evals = r.options["max_evals"]
    files = [save_maps(ctx.out, "shap", r.maps, ctx.files, targets, preds, base_values=r.base_values)]
    fx = probs[np.arange(len(targets)), targets]
    sums = r.maps.reshape(len(r.maps), -1).sum(1, dtype=np.float64)
    caps = [draw.caption(f, ctx.class_names, int(t), int(p), float(pr[p]), int(lb))
            for f, t, p, pr, lb in zip(ctx.files, targets, preds, probs, ctx.labels)]
    notes = [f"p({ctx.class_names[t]}) {v:.3f}\n= blurred {b:.3f} + sum {m:+.3f}"
             for t, v, b, m in zip(targets, fx, r.base_values, sums)]
    title = (f"SHAP (Lundberg & Lee 2017), shap's Partition explainer: {r.options['masker']} masker\n"
             f"{max_evals} evaluations per image; map = Owen values of p(target), summed over channels,\n"
             f"adding up to p(image) - p(blurred image); red: for the class, blue: against")
    files.append(draw.attribution_grid(ctx.images, r.maps, caps, title, ctx.out / "shap.png", signed=True,
                                       unit=UNIT, per_row_note=notes))
    # shap's own f(x) is in the sum; against the run's fp32 predictions it differs only by bf16 rounding
    return ShapResult(files=files, precision=ctx.precision, max_evals=int(max_evals), masker=r.options["masker"],
                      round_size=int(r.options["round_size"]),
                      base_values={f: float(v) for f, v in zip(ctx.files, r.base_values)},
                      sum={f: float(v) for f, v in zip(ctx.files, sums)},
                      additivity_gap_max=float(np.abs(sums - (fx - r.base_values)).max()))
