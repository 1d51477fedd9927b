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
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import saliency
from explain import model_device
from records import TrustResult
from settings import TRUST_KEYS

METRICS = ("deletion_auc", "insertion_auc", "pointing_game", "mass_in_mask", "mass_in_mask_ratio",
           "sanity_spearman")
SANITY_FAIL = 0.5          # Spearman >= this after full randomisation: "fails sanity check"

MapFn = Callable[[nn.Module, torch.Tensor, np.ndarray], np.ndarray]


# ---------------------------------------------------------------- pure compute: faithfulness

def fit_maps(maps: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Maps N x h x w resized (bilinear) to N x height x width float32, NaN/inf replaced by 0."""
    size = (height, height if width is None else width)
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if maps.shape[1:] == size:
        return maps
    t = F.interpolate(torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False)
    return t[:, 0].numpy()


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
    n, c, h, w = images.shape
    counts = (np.arange(steps + 1) * (h * w)) // steps          # pixels changed after each step: 0 .. H*W
    device = model_device(model)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ranks_t = torch.as_tensor(np.asarray(ranks), dtype=torch.int64)
    counts_t = torch.as_tensor(counts, dtype=torch.int64)
    start = saliency.blurred(images, blur) if mode == "insertion" else torch.zeros_like(images)
    pairs = np.stack(np.meshgrid(np.arange(n), np.arange(steps + 1), indexing="ij"), -1).reshape(-1, 2)
    probs = np.empty(len(pairs), dtype=np.float64)
    with torch.inference_mode():
        for b in range(0, len(pairs), batch_size):
            img_idx = torch.as_tensor(pairs[b:b + batch_size, 0])
            step_idx = torch.as_tensor(pairs[b:b + batch_size, 1])
            changed = (ranks_t[img_idx] < counts_t[step_idx, None]).view(-1, 1, h, w)
            x = torch.where(changed, start[img_idx], images[img_idx]) if mode == "deletion" else \
                torch.where(changed, images[img_idx], start[img_idx])
            p = torch.softmax(model(x.to(device).contiguous(memory_format=fmt)).float(), 1)
            probs[b:b + batch_size] = p[torch.arange(len(img_idx)), torch.as_tensor(targets)[img_idx]].cpu().numpy()
    return counts / (h * w), probs.reshape(n, steps + 1)


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
    names = parameterised_modules(work, work_net, images[:1].to(model_device(model)))
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


# ---------------------------------------------------------------- the task

SAMPLED = ("lime", "shap")   # the sampling methods, scored on fewer images at their figures' sample counts


def trust_settings(ctx) -> dict[str, Any]:
    """The trust keys of the run's settings (resolved once: --full, --trust full, --set and --time-budget included)."""
    return {k: ctx.settings[k] for k in TRUST_KEYS} | {"batch_size": ctx.settings["batch_size"]}


def is_full(ctx) -> bool:
    """`--trust full` or `--full`."""
    return ctx.opts.trust == "full" or bool(ctx.opts.full)


def summary(values: list[float]) -> dict[str, Any]:
    """Mean, std (population) and count of a list of scores; None values when empty."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def round_robin(files: list[str], labels: list[int]) -> list[int]:
    """Indices of files ordered first image of every class, then the second of every class, ... (stable)."""
    by: dict[int, list[int]] = {}
    for i, lb in enumerate(labels):
        by.setdefault(int(lb), []).append(i)
    out: list[int] = []
    for k in range(max((len(v) for v in by.values()), default=0)):
        out += [v[k] for _, v in sorted(by.items()) if k < len(v)]
    return out


def mark_dir(ctx, split: str) -> Path | None:
    """The demo's shortcut-mark masks of a split (masks_mark/<split>/), or None without marks."""
    d = Path(ctx.data) / "masks_mark" / split
    return d if d.is_dir() else None


def shortcut_class(ctx) -> int | None:
    """The class whose training images carry the mark most often (share of its images), or None without marks."""
    import dataset

    d = mark_dir(ctx, "training")
    if d is None or not (Path(ctx.data) / "training").is_dir():
        return None
    tr = dataset.open_split(ctx.data, "training")
    marked = {p.stem for p in d.glob("*.png")}
    share = np.zeros(ctx.num_classes)
    count = np.zeros(ctx.num_classes)
    for f, lb in zip(tr.files, tr.labels):
        if lb is not None and 0 <= lb < ctx.num_classes:
            count[lb] += 1
            share[lb] += Path(f).stem in marked
    return int(np.argmax(share / np.maximum(count, 1))) if share.any() else None


def _val_images(ctx, per_class: int, marked: bool) -> list[str]:
    """Validation files for the trust pool: per class the first unmarked (demo: demo.gt_subset) or marked images."""
    import dataset
    import demo

    val = dataset.open_split(ctx.data, "validation")
    d = mark_dir(ctx, "validation")
    has = (lambda f: d is not None and (d / (Path(f).stem + ".png")).is_file())
    if ctx.demo and not marked:
        files = [f for f in demo.gt_subset(ctx.data, per_class=per_class) if not has(f)]
    else:
        files = []
        for c in range(ctx.num_classes):
            files += [f for f, lb in zip(val.files, val.labels) if lb == c and has(f) == marked][:per_class]
    return files


def _load_val(ctx, files: list[str], marks: bool = False) -> dict[str, Any]:
    """Images, masks (object, and the mark's when asked), labels and probabilities of validation files."""
    import dataset
    import explain

    val = dataset.open_split(ctx.data, "validation")
    idx = [val.files.index(f) for f in files]
    images, masks = dataset.load_batch(val, idx, ctx.input_size, ctx.cv2_mode, ctx.resize)
    out = {"images": images, "masks": masks, "labels": np.array([val.labels[i] for i in idx]),
           "files": [f"validation/{f}" for f in files], "seed_keys": [("val", f) for f in files],
           "probs": explain.predict(ctx.model, images, ctx.settings["batch_size"])}
    if marks:
        d = mark_dir(ctx, "validation")
        out["marks"] = np.stack([dataset.load_mask(d / (Path(f).stem + ".png"), ctx.input_size, ctx.resize)
                                 for f in files])
    return out


def pools(ctx, s: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, int]]:
    """The scored pool (validation images per class as the model's cost allows, else the selected images), the
    marked validation images of the shortcut score (None without marks), and the counts used."""
    import budget
    import dataset

    counts = budget.trust_counts(ctx.macs(), s)
    val_ok = ((Path(ctx.data) / "validation").is_dir() and dataset.is_food11(ctx.data)
              and dataset.open_split(ctx.data, "validation").labelled)
    counts = counts | {"macs": ctx.macs(), "per_class": counts["per_class"] if val_ok else 0}
    files = _val_images(ctx, counts["per_class"], False) if counts["per_class"] else []
    if files:
        pool = _load_val(ctx, files)
        order = round_robin(pool["files"], list(pool["labels"]))   # LIME/SHAP's one per class come first
        pool = {k: (v[order] if isinstance(v, (np.ndarray, torch.Tensor)) and v is not None else
                    [v[i] for i in order] if isinstance(v, list) else v) for k, v in pool.items()}
        pool["targets"] = pool["labels"].copy()
        pool["source"] = "validation"
    else:
        n = min(int(s["trust_images"]), len(ctx.files))
        pool = {"images": ctx.images[:n], "masks": None if ctx.masks is None else ctx.masks[:n],
                "files": list(ctx.files[:n]), "labels": ctx.labels[:n], "probs": ctx.probs()[:n],
                "targets": ctx.targets()[:n], "seed_keys": [("selected", f) for f in ctx.files[:n]],
                "source": "selected"}
    marked = None
    sc = shortcut_class(ctx) if counts["per_class"] and mark_dir(ctx, "validation") is not None else None
    if sc is not None:
        seen: dict[int, int] = {}
        mfiles = []
        for f in _val_images(ctx, counts["per_class"], True):   # the shortcut class: per_class; others: sampled
            c = dataset.parse_label(f)
            if seen.get(c, 0) < (counts["per_class"] if c == sc else counts["sampled_per_class"]):
                seen[c] = seen.get(c, 0) + 1
                mfiles.append(f)
        if mfiles:
            marked = _load_val(ctx, mfiles, marks=True)
            order = round_robin(marked["files"], list(marked["labels"]))
            marked = {k: (v[order] if isinstance(v, (np.ndarray, torch.Tensor)) else
                          [v[i] for i in order] if isinstance(v, list) else v) for k, v in marked.items()}
            marked["targets"] = marked["labels"].copy()
            marked["shortcut_class"] = sc
            marked["source"] = "validation"
    return pool, marked, counts


def method_maps(ctx, method: str, images: torch.Tensor, targets: np.ndarray, keys: list[str],
                sanity: bool = False, model: nn.Module | None = None) -> np.ndarray:
    """One registered method's maps for any images, with the run's resolved settings (the sanity counts if asked)."""
    import explain

    m = explain.get_method(method)
    opts = explain.method_options(method, ctx.settings, sanity)
    if method == "gradcam":
        opts["layer"] = ctx.gradcam_layer()
    return explain.attribute(ctx.model if model is None else model, images, targets, method,
                             batch_size=ctx.settings[m.batch_key], seed=ctx.seed, keys=keys,
                             precision=ctx.precision, **opts).maps


def _subset(pool: dict[str, Any], method: str, sampled_per_class: int) -> list[int]:
    """Pool indices a method is scored on: all, or for LIME/SHAP the first sampled_per_class of every class."""
    if method not in SAMPLED or pool["source"] != "validation":
        return list(range(len(pool["files"])))
    seen: dict[int, int] = {}
    out = []
    for i, lb in enumerate(pool["labels"]):
        if seen.get(int(lb), 0) < sampled_per_class:
            seen[int(lb)] = seen.get(int(lb), 0) + 1
            out.append(i)
    return out


def _maps_for(ctx, pool: dict[str, Any], method: str, idx: list[int]) -> np.ndarray:
    """A method's maps of pool images idx (the selected images' maps come from the run's cache)."""
    size = (ctx.images.shape[-2], ctx.images.shape[-1])
    if method == "random":
        return np.stack([ctx.rng("trust", "random", *pool["seed_keys"][i]).random(size)
                         for i in idx]).astype(np.float32)
    if pool["source"] == "selected":
        return fit_maps(ctx.attribution(method).maps[idx], *size)
    return fit_maps(method_maps(ctx, method, pool["images"][idx], pool["targets"][idx],
                                [pool["files"][i] for i in idx]), *size)


def _collect(ctx, s: dict[str, Any], pool: dict[str, Any], marked: dict[str, Any] | None,
             counts: dict[str, int]) -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    """Per registered method (and random): maps of its pool images and of the marked images; skip notes."""
    import explain
    from errors import Skipped

    methods: dict[str, dict] = {}
    marks: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for m in explain.method_names() + ["random"]:
        try:
            idx = _subset(pool, m, counts["sampled_per_class"])
            methods[m] = {"idx": idx, "maps": _maps_for(ctx, pool, m, idx), "targets": pool["targets"][idx]}
            if marked is not None:   # LIME/SHAP: one marked image of the shortcut class, one of another class
                midx = _subset(marked | {"labels": marked["labels"] != marked["shortcut_class"]}, m, 1)
                marks[m] = {"idx": midx, "maps": _maps_for(ctx, marked, m, midx)}
        except Skipped as why:
            skipped[m] = str(why)
            methods.pop(m, None)
    return methods, marks, skipped


def score(ctx, pool: dict[str, Any], entry: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """Per-image deletion/insertion AUCs (and curves) and ground-truth scores of one method's maps.

    Ground truth counts the images with a non-empty object mask that the model classifies correctly."""
    idx = entry["idx"]
    ranks = np.stack([pixel_ranks(m, ctx.rng("trust", "ties", *pool["seed_keys"][p]))
                      for m, p in zip(entry["maps"], idx)])
    images = pool["images"][idx]
    out: dict[str, Any] = {"files": [pool["files"][p] for p in idx]}
    for mode in ("deletion", "insertion"):
        x, probs = perturbation_curves(ctx.infer_model(), images, ranks, entry["targets"], mode, int(s["deletion_steps"]),
                                       int(s["batch_size"]), float(s["insertion_blur"]))
        out["x"], out[f"{mode}_curves"], out[f"{mode}_auc"] = x, probs, auc(x, probs)
    if pool["masks"] is not None:
        masks = pool["masks"][idx]
        correct = [pool["labels"][p] < 0 or pool["probs"][p].argmax() == pool["labels"][p] for p in idx]
        keep = [k for k in range(len(idx)) if masks[k].any() and correct[k]]
        out["gt_files"] = [out["files"][k] for k in keep]
        out["pointing_game"] = np.array([pointing_game(entry["maps"][k], masks[k]) for k in keep])
        out["mass_in_mask"] = np.array([mass_in_mask(entry["maps"][k], masks[k]) for k in keep])
        out["mass_in_mask_ratio"] = out["mass_in_mask"] / np.array([masks[k].mean() for k in keep]) if keep else \
            np.zeros(0)
    return out


def shortcut_scores(marked: dict[str, Any], marks: dict[str, dict], s: dict[str, Any], ctx) -> dict[str, Any]:
    """Per method: share of positive attribution on the mark, for the shortcut class and for the other classes."""
    sc = marked["shortcut_class"]
    out: dict[str, Any] = {}
    for m, e in marks.items():
        share = np.array([mass_in_mask(mp, marked["marks"][p]) for mp, p in zip(e["maps"], e["idx"])])
        area = np.array([marked["marks"][p].mean() for p in e["idx"]])
        own = np.array([marked["labels"][p] == sc for p in e["idx"]])
        rng = ctx.rng("trust", "bootstrap", "shortcut", m)
        out[m] = {"shortcut_class": bootstrap(share[own], rng, s["trust_bootstrap"]),
                  "other_classes": bootstrap(share[~own], rng, s["trust_bootstrap"]),
                  "mark_area_share": float(area.mean()) if area.size else None,
                  "files": [marked["files"][p] for p in e["idx"]], "share": share.tolist()}
        out[m]["reveals_shortcut"] = bool(out[m]["shortcut_class"]["n"] and
                                          out[m]["shortcut_class"]["mean"] >= 2 * out[m]["mark_area_share"])
    return out


def vs_random(scores: dict[str, dict], ctx, s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Paired bootstrap per method: random's deletion AUC - the method's, and the method's insertion AUC - random's."""
    if "random" not in scores:
        return {}
    ref = scores["random"]
    pos = {p: k for k, p in enumerate(ref["idx"])}
    out: dict[str, dict[str, Any]] = {}
    for m, sc in scores.items():
        if m == "random":
            continue
        a = [k for k, p in enumerate(sc["idx"]) if p in pos]
        b = [pos[sc["idx"][k]] for k in a]
        out[m] = {"deletion_gain": paired_gain(ref["deletion_auc"][b], sc["deletion_auc"][a],
                                               ctx.rng("trust", "bootstrap", "vs-random", "deletion", m),
                                               s["trust_bootstrap"]),
                  "insertion_gain": paired_gain(sc["insertion_auc"][a], ref["insertion_auc"][b],
                                                ctx.rng("trust", "bootstrap", "vs-random", "insertion", m),
                                                s["trust_bootstrap"])}
    return out


def sanity(ctx, s: dict[str, Any], methods: list[str], pool: dict[str, Any], n: int) -> dict[str, Any]:
    """The cascading randomisation of the gradient methods on the pool's first n images (one per class first)."""
    import explain

    k = min(n, len(pool["files"]))
    grads = [m for m in methods if m in explain.METHODS and not explain.get_method(m).forward_only]
    files = list(pool["files"][:k])
    fns: dict[str, MapFn] = {m: (lambda work, x, t, m=m: method_maps(ctx, m, x, t, files, True, work))
                             for m in grads}
    seed = int(ctx.rng("trust", "sanity").integers(0, 2 ** 62))
    res = cascade(ctx.model, ctx.net, pool["images"][:k], pool["targets"][:k], fns, seed)
    res["files"] = files
    res["gradcam_layer"] = ctx.gradcam_layer() if "gradcam" in grads else None
    return res


def tables(scores: dict[str, dict], san: dict[str, Any], rng_of: Callable[[str, str], np.random.Generator] | None = None,
           resamples: int = 2000) -> dict[str, dict[str, Any]]:
    """Method x metric: mean, std, 95% bootstrap interval [lo, hi] and n, and the sanity verdict."""
    rng_of = rng_of or (lambda m, metric: np.random.default_rng([len(m), len(metric)]))
    rows: dict[str, dict[str, Any]] = {}
    for m, sc in scores.items():
        row = {metric: bootstrap(list(sc.get(metric, [])), rng_of(m, metric), resamples)
               for metric in METRICS if metric != "sanity_spearman"}
        if m in san["spearman"]:
            row["sanity_spearman"] = bootstrap(list(san["spearman"][m][-1]), rng_of(m, "sanity_spearman"), resamples)
            row["sanity_check"] = "fails sanity check" if row["sanity_spearman"]["mean"] >= SANITY_FAIL else "passes"
        else:
            row["sanity_spearman"] = bootstrap([], rng_of(m, "sanity_spearman"))
            row["sanity_check"] = "not applicable"
        rows[m] = row
    return rows


DEFINITIONS = {
    "protocol": "fixed: deletion sets the removed pixels to 0 (black); insertion pastes the original pixels onto a "
                "Gaussian-blurred copy; both score the softmax probability of the explained class (the image's "
                "true label on validation images) at every step",
    "deletion_auc": "area under the explained class's softmax probability as the highest-ranked pixels are set to 0, "
                    "x = fraction of pixels removed in [0,1] (lower = more faithful)",
    "insertion_auc": "area under the explained class's softmax probability as the highest-ranked pixels are pasted "
                     "onto a blurred copy (sigma = insertion_blur x image side), x in [0,1] (higher = more faithful)",
    "pointing_game": "1 when the map's maximum lies inside the ground-truth mask (tied maxima: fraction inside); "
                     "a constant map (e.g. all zero) scores 0; over correctly classified unmarked images",
    "mass_in_mask": "fraction of the map's positive mass inside the mask; a map with no positive mass scores 0",
    "mass_in_mask_ratio": "mass_in_mask divided by the mask's share of the image (1 = no better than uniform)",
    "sanity_spearman": "Spearman rank correlation of |map| after re-initialising every parameterised layer "
                       "(cascading from the output) with |map| of the trained model; a constant map scores 0; "
                       f">= {SANITY_FAIL} fails the sanity check",
    "interval": "95% percentile bootstrap interval of the mean over images (trust_bootstrap resamples, seeded by "
                "(seed, 'trust', 'bootstrap', method, metric)); n = images scored",
    "vs_random": "paired bootstrap over the images both scored: deletion_gain = random's deletion AUC - the "
                 "method's, insertion_gain = the method's insertion AUC - random's (> 0: better than random)",
    "shortcut": "share of the map's positive mass on the mark (masks_mark/validation), over validation images that "
                "carry it, explaining their true label; for the shortcut class (the class whose training images carry "
                "the mark most often) and for the other classes; reveals_shortcut: the shortcut class's mean share "
                ">= 2x the mark's area share",
    "images": "validation images per class by the model's multiply-adds (budget.trust_counts): LIME and SHAP on the "
              "first trust_sampled_per_class of every class at their figures' sample counts; without validation "
              "images, the first trust_images selected images",
    "ranking": "pixels ranked by raw map value, highest first; ties broken by a seeded random permutation",
    "random": "baseline: a uniform random map per image, seeded by (seed, 'trust', 'random', image)",
}


def _fmt(cell: dict[str, Any]) -> str:
    """'mean [lo, hi]' or '-'."""
    return "-" if cell["n"] == 0 else f"{cell['mean']:.3f} [{cell['lo']:.3f}, {cell['hi']:.3f}]"


def shown_image(scores: dict[str, dict]) -> int:
    """Pool index of the image every method scored whose (insertion - deletion) AUC varies most across methods."""
    common = sorted(set.intersection(*(set(sc["idx"]) for sc in scores.values())))
    spread = [np.std([sc["insertion_auc"][sc["idx"].index(i)] - sc["deletion_auc"][sc["idx"].index(i)]
                      for sc in scores.values()]) for i in common]
    return common[int(np.argmax(spread))]


def draw_curves(ctx, pool: dict[str, Any], scores: dict[str, dict], rows: dict[str, dict], s: dict[str, Any],
                path: Path, gains: dict[str, dict] | None = None, shortcut: dict[str, Any] | None = None) -> Path:
    """trust_curves.png: one image, its deletion and insertion curves per method, and the method x metric table."""
    import draw
    import explain

    fig, axes = draw.figure(2, 3, cell=(5.0, 3.4), title="How far to trust each explanation: deletion / insertion "
                            f"(Petsiuk et al. 2018, {s['deletion_steps']} steps), ground truth, sanity check, shortcut")
    i = shown_image(scores)
    first = {m: sc for m, sc in scores.items() if i in sc["idx"]}
    at = {m: sc["idx"].index(i) for m, sc in first.items()}
    p = pool["probs"][i]
    target = int(scores["random"]["targets"][at["random"]])
    draw.show_image(axes[0, 0], pool["images"][i], draw.caption(pool["files"][i], ctx.class_names, target,
                                                                  int(p.argmax()), float(p.max()), int(pool["labels"][i]))
                    + "\n(the image where the methods differ most)")
    colours = {m: f"C{i}" for i, m in enumerate(explain.method_names())} | {"random": "0.45"}
    for ax, mode, better in ((axes[0, 1], "deletion", "lower"), (axes[0, 2], "insertion", "higher")):
        for m, sc in first.items():
            ax.plot(sc["x"], sc[f"{mode}_curves"][at[m]], color=colours.get(m, "k"), ls="--" if m == "random" else "-",
                    lw=1.3, label=f"{m} ({sc[f'{mode}_auc'][at[m]]:.3f})")
        ax.set_xticks(np.linspace(0, 1, 6))
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel(f"fraction of pixels {'removed (set to 0)' if mode == 'deletion' else 'inserted into blur'}")
        ax.set_ylabel("probability of the explained class")
        ax.set_title(f"{mode} curve of this image\n(AUC in the legend; {better} = more faithful)")
        ax.legend(fontsize=6, loc="upper right" if mode == "deletion" else "lower right")
    gs = axes[1, 0].get_gridspec()
    for ax in axes[1]:
        ax.remove()
    tab = fig.add_subplot(gs[1, :])
    tab.axis("off")
    gains = gains or {}
    cols = ["deletion_auc", "insertion_auc", "pointing_game", "mass_in_mask_ratio", "sanity_spearman"]
    heads = ["deletion AUC ↓", "insertion AUC ↑", "pointing game ↑", "mass / mask share ↑", "sanity Spearman ↓",
             "random − del ↑", "ins − random ↑"]
    if shortcut:
        heads += ["on mark: shortcut class", "on mark: others"]
    text = []
    for m in rows:
        line = [_fmt(rows[m][c]) for c in cols]
        line += [_fmt(gains[m][k]) if m in gains else "-" for k in ("deletion_gain", "insertion_gain")]
        if shortcut:
            sh = shortcut.get(m)
            line += [_fmt(sh[k]) + (" ★" if k == "shortcut_class" and sh["reveals_shortcut"] else "") if sh else "-"
                     for k in ("shortcut_class", "other_classes")]
        text.append(line)
    counts = [f"{m} (n={rows[m]['deletion_auc']['n']}, gt {rows[m]['pointing_game']['n']}"
              + (f", mark {shortcut[m]['shortcut_class']['n']}+{shortcut[m]['other_classes']['n']}"
                 if shortcut and m in shortcut else "") + ")" for m in rows]
    t = tab.table(cellText=text, rowLabels=counts, colLabels=heads, cellLoc="center", bbox=[0.16, 0.0, 0.84, 0.88])
    t.auto_set_font_size(False)
    t.set_fontsize(5.5)
    for r, m in enumerate(rows, start=1):
        if rows[m]["sanity_check"] == "fails sanity check":
            t[r, len(cols) - 1].set_facecolor("#f4c7c3")
        if shortcut and m in shortcut and shortcut[m]["reveals_shortcut"]:
            t[r, len(cols) + 2].set_facecolor("#fde7a9")
    mark_note = (f"; on mark: share of positive mass on the mark (area share "
                 f"{next(iter(shortcut.values()))['mark_area_share']:.3f}), ★ = at least twice that for the "
                 f"shortcut class {ctx.class_names[ctx.cache['trust_shortcut_class']]}") if shortcut else ""
    tab.set_title("mean [95% bootstrap interval] over images; n = images per method (deletion/insertion, ground truth: "
                  "correct unmarked ones" + (", marked images: shortcut class + others" if shortcut else "") + ")"
                  + "\nrandom − del, ins − random: paired intervals against the random map; sanity Spearman after full "
                  f"randomisation; protocol: deletion sets pixels to 0, insertion pastes them onto the blur{mark_note}",
                  fontsize=7)
    draw.layout(fig)
    return draw.save(fig, path)


def draw_sanity(ctx, san: dict[str, Any], pool: dict[str, Any], path: Path, max_steps: int = 9) -> Path:
    """sanity_check.png: the cascade of |maps| for the first sanity image and the mean Spearman curves."""
    import draw
    import explain

    layers = san["layers"]
    steps = list(range(len(layers)))
    if len(steps) > max_steps + 1:   # keep the original, the last and evenly spaced steps between
        steps = sorted(set(np.linspace(0, len(layers) - 1, max_steps + 1).round().astype(int).tolist()))
    methods = list(san["maps"])
    fig, axes = draw.figure(len(methods) + 2, len(steps) + 1, cell=(1.45, 1.5), extra_width=0.6,
                            title="Sanity check (Adebayo et al. 2018): maps as the network's layers are re-initialised "
                                  "from the output down (each |map| scaled to its own 99.5th percentile)")
    img = pool["images"][0]
    t = int(pool["targets"][0])
    p = pool["probs"][0]
    draw.show_image(axes[0, 0], img, draw.caption(pool["files"][0], ctx.class_names, t, int(p.argmax()),
                                                  float(p.max()), int(pool["labels"][0])))
    for ax in axes[1:len(methods), 0]:
        ax.axis("off")
    for r, m in enumerate(methods):
        axes[r, 1].set_ylabel(m, fontsize=8)
        for c, k in enumerate(steps, start=1):
            shown = draw.normalize(np.abs(san["maps"][m][k, 0]))
            im = draw.show_map(axes[r, c], shown, vrange=(0.0, 1.0))
            if r == 0:
                axes[r, c].set_title("trained" if k == 0 else f"randomised\ndown to {layers[k]}", fontsize=7)
            axes[r, c].set_xlabel(f"ρ = {san['spearman'][m][k, 0]:.2f}", fontsize=7, labelpad=1)
        if r == 0:
            draw.colorbar(fig, im, axes[0, -1], "|map| / own 99.5th pct")
    gs = axes[-2, 0].get_gridspec()
    for ax in axes[-2:].flat:
        ax.remove()
    curve = fig.add_subplot(gs[-2:, :])
    x = np.arange(len(layers))
    for i, m in enumerate(methods):
        v = san["spearman"][m]
        colour = f"C{explain.method_names().index(m)}"
        curve.plot(x, v.mean(1), marker="o", ms=3, color=colour, label=m)
        if v.shape[1] > 1:
            curve.fill_between(x, v.min(1), v.max(1), color=colour, alpha=0.15)
    curve.axhline(SANITY_FAIL, color="crimson", ls="--", lw=1, label=f"fails at or above {SANITY_FAIL}")
    curve.set_xticks(x)
    curve.set_xticklabels(["trained"] + [f"→ {n}" for n in layers[1:]], fontsize=6)
    curve.set_yticks(np.linspace(-1, 1, 9))
    curve.set_ylim(-1.05, 1.05)
    curve.grid(alpha=0.3)
    curve.set_ylabel("Spearman ρ of |map|\nwith the trained map")
    curve.set_title(f"rank correlation with the trained model's map (mean over {len(san['files'])} image(s)"
                    f"{', band = min..max' if len(san['files']) > 1 else ''}); Grad-CAM at {san['gradcam_layer']}",
                    fontsize=8)
    curve.legend(fontsize=7, loc="lower left", ncol=5)
    draw.layout(fig)
    return draw.save(fig, path)


def _cell(c: dict[str, Any], k: str) -> Any:
    """One CSV cell of a summary: '' for None, rounded floats, n as is."""
    return "" if c[k] is None else (c[k] if k == "n" else round(c[k], 6))


def task_trust(ctx) -> TrustResult:
    """Deletion/insertion AUC, ground truth, the sanity check, the shortcut score and the gains over random, with
    bootstrap intervals, for every registered method of this run."""
    from errors import Skipped
    from outputs import write_csv, write_json
    from tqdm import tqdm

    s = trust_settings(ctx)
    pool, marked, counts = pools(ctx, s)
    methods, marks, skipped = _collect(ctx, s, pool, marked, counts)
    if len(methods) == 1:
        raise Skipped("no attribution method applies to this model")
    scores = {m: score(ctx, pool, e, s) | {"targets": e["targets"], "idx": e["idx"]}
              for m, e in tqdm(methods.items(), desc="trust", unit="method", leave=False, disable=None)}
    san = sanity(ctx, s, list(methods), pool, counts["sanity"])
    rows = tables(scores, san, lambda m, metric: ctx.rng("trust", "bootstrap", m, metric), s["trust_bootstrap"])
    gains = vs_random(scores, ctx, s)
    shortcut = shortcut_scores(marked, marks, s, ctx) if marked is not None else {}
    if marked is not None:
        ctx.cache["trust_shortcut_class"] = marked["shortcut_class"]
    per_image = {m: {"files": sc["files"], "deletion_auc": sc["deletion_auc"], "insertion_auc": sc["insertion_auc"]}
                 | ({"gt_files": sc["gt_files"], **{k: sc[k] for k in ("pointing_game", "mass_in_mask",
                                                                           "mass_in_mask_ratio")}}
                    if "gt_files" in sc else {}) for m, sc in scores.items()}
    images = {m: len(e["idx"]) for m, e in methods.items()}
    record = {"mode": "full" if is_full(ctx) else "cheap", "settings": s, "counts": counts, "source": pool["source"],
              "images_per_method": images, "methods": rows, "metrics": list(METRICS), "vs_random": gains,
              "shortcut": {"class": ctx.class_names[marked["shortcut_class"]] if marked is not None else None,
                           "methods": shortcut},
              "definitions": DEFINITIONS, "per_image": per_image, "skipped": skipped,
              "sanity": {"files": san["files"], "layers": san["layers"], "gradcam_layer": san["gradcam_layer"],
                         "threshold": SANITY_FAIL, "correlation": "Spearman of absolute values",
                         "spearman": {m: v.tolist() for m, v in san["spearman"].items()}}}
    stats = ("mean", "lo", "hi", "n")
    header = (["method"] + [f"{m}_{k}" for m in METRICS for k in stats] + ["sanity_check"]
              + [f"{g}_{k}" for g in ("deletion_gain", "insertion_gain") for k in stats]
              + [f"mark_{g}_{k}" for g in ("shortcut_class", "other_classes") for k in stats] + ["reveals_shortcut"])
    empty = {k: None for k in stats} | {"n": 0}
    csv_rows = [[m] + [_cell(r[metric], k) for metric in METRICS for k in stats] + [r["sanity_check"]]
                + [_cell(gains.get(m, {}).get(g, empty), k) for g in ("deletion_gain", "insertion_gain") for k in stats]
                + [_cell(shortcut.get(m, {}).get(g, empty), k) for g in ("shortcut_class", "other_classes")
                   for k in stats] + [shortcut[m]["reveals_shortcut"] if m in shortcut else ""]
                for m, r in rows.items()]
    files = [draw_curves(ctx, pool, scores, rows, s, ctx.out / "trust_curves.png", gains, shortcut),
             draw_sanity(ctx, san, pool, ctx.out / "sanity_check.png"),
             write_json(ctx.out / "trust.json", record),
             write_csv(ctx.out / "trust.csv", header, csv_rows)]
    return TrustResult(files=files, precision=ctx.precision, mode=record["mode"], images=len(pool["files"]),
                       settings=s, skipped=skipped, source=pool["source"], images_per_method=images,
                       sanity_images=len(san["files"]), macs=int(counts["macs"]),
                       methods={m: {metric: r[metric]["mean"] for metric in METRICS} |
                                {f"{metric}_ci": [r[metric]["lo"], r[metric]["hi"]] for metric in METRICS} |
                                {"sanity_check": r["sanity_check"]} for m, r in rows.items()},
                       vs_random={m: {g: [v[g]["lo"], v[g]["hi"]] for g in v} for m, v in gains.items()},
                       shortcut_class=record["shortcut"]["class"],
                       shortcut={m: {"shortcut_class": v["shortcut_class"]["mean"],
                                     "other_classes": v["other_classes"]["mean"],
                                     "reveals_shortcut": v["reveals_shortcut"]} for m, v in shortcut.items()})
