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
from model import device_of

METHODS = ("vanilla", "smoothgrad", "integrated_gradients", "gradcam", "lime", "occlusion")
GRADIENT_METHODS = ("vanilla", "smoothgrad", "integrated_gradients", "gradcam")
METRICS = ("deletion_auc", "insertion_auc", "pointing_game", "mass_in_mask", "mass_in_mask_ratio",
           "sanity_spearman")
SANITY_FAIL = 0.5          # Spearman >= this after full randomisation: "fails sanity check"
TRUST_KEYS = ("trust_images", "deletion_steps", "sanity_images", "sanity_smoothgrad_n", "sanity_ig_steps",
              "insertion_blur")

MapFn = Callable[[nn.Module, "nn.Module | None", torch.Tensor, np.ndarray], np.ndarray]


# ---------------------------------------------------------------- pure compute: faithfulness

def fit_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """Maps N x h x w resized (bilinear) to N x size x size float32, NaN/inf replaced by 0."""
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if maps.shape[1:] == (size, size):
        return maps
    t = F.interpolate(torch.from_numpy(maps)[:, None], size=(size, size), mode="bilinear", align_corners=False)
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
    device = device_of(model)
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


def cascade(model: nn.Module, net: nn.Module, layer_name: str | None, images: torch.Tensor, targets: np.ndarray,
            methods: dict[str, MapFn], seed: int) -> dict[str, Any]:
    """Cascading randomisation from the output layer down on a deep copy of `model` (whose user network is `net`).

    Each method is fn(model, layer_module, images, targets) -> N x H x W maps. Returns
    {"layers": ["original", name...], "maps": {method: steps x N x H x W}, "spearman": {method: steps x N}},
    where row k holds the maps after re-initialising the top k parameterised modules.
    """
    path = _module_path(model, net)
    work = copy.deepcopy(model).eval()
    work_net = work.get_submodule(path) if path else work
    modules = dict(work_net.named_modules())
    device = device_of(model)
    names = parameterised_modules(work, work_net, images[:1].to(device))
    layer = modules[layer_name] if layer_name else None
    maps: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for step, name in enumerate([None] + names[::-1]):
        if name is not None:
            reinitialise(modules[name], int(np.random.default_rng([seed, step]).integers(0, 2 ** 62)))
        for method, fn in methods.items():
            maps[method].append(np.asarray(fn(work, layer, images, targets), dtype=np.float32))
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



# ---------------------------------------------------------------- the task

def trust_settings(ctx) -> dict[str, Any]:
    """The trust keys of the run's settings; `--trust full` (or --full) takes settings.FULL's, --set still wins."""
    import settings as settings_mod

    if getattr(ctx.args, "trust", "cheap") == "full" and not ctx.args.full:
        full = settings_mod.resolve(ctx.device.type, True, ctx.args.set)
        return {k: full[k] for k in TRUST_KEYS} | {"batch_size": ctx.settings["batch_size"]}
    return {k: ctx.settings[k] for k in TRUST_KEYS} | {"batch_size": ctx.settings["batch_size"]}


def is_full(ctx) -> bool:
    """`--trust full` or `--full`."""
    return getattr(ctx.args, "trust", "cheap") == "full" or bool(ctx.args.full)


def summary(values: list[float]) -> dict[str, Any]:
    """Mean, std (population) and count of a list of scores; None values when empty."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def _gt_pool(ctx) -> dict[str, Any] | None:
    """The demo's fixed ground-truth subset (validation images, masks, labels, files), or None off the demo."""
    import dataset
    import demo

    if not ctx.demo:
        return None
    val = dataset.open_split(ctx.data, "validation")
    files = demo.gt_subset(ctx.data)
    idx = [val.files.index(f) for f in files]
    images, masks = dataset.load_batch(val, idx, ctx.input_size, ctx.cv2_mode)
    return {"images": images, "masks": masks, "labels": np.array([val.labels[i] for i in idx]),
            "files": [f"validation/{f}" for f in files], "indices": idx}


def _extra_maps(ctx, method: str, images: torch.Tensor, targets: np.ndarray, files: list[str],
                indices: list[int]) -> np.ndarray | None:
    """Maps of one method for images outside the run's selection, with the run's settings (None: not computable)."""
    s = ctx.settings
    bs = s["grad_batch_size"]
    if method == "vanilla":
        return saliency.vanilla(ctx.model, images, targets, bs)
    if method == "smoothgrad":
        return saliency.smoothgrad(ctx.model, images, targets, s["smoothgrad_n"], s["smoothgrad_sigma"], ctx.seed,
                                   bs, indices=[10 ** 6 + i for i in indices])   # validation ids, apart from training's
    if method == "integrated_gradients":
        return saliency.integrated_gradients(ctx.model, images, targets, s["ig_steps"], s["ig_baseline"], bs)[0]
    if method == "gradcam":
        return saliency.gradcam(ctx.model, ctx.layer(saliency.gradcam_layer_name(ctx)), images, targets, bs)
    if method == "lime":
        import lime_explain

        exps = lime_explain.run_lime(ctx, images, files, s["lime_class_samples"], "trust lime")
        return lime_explain.weight_maps(exps, targets)
    if method == "occlusion":
        import occlusion

        return occlusion.occlusion(ctx.infer_model(), images, targets, s["occlusion_patch"], s["occlusion_stride"],
                                   batch_size=s["batch_size"])
    return None


def _collect(ctx, s: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict], dict[str, str]]:
    """The image pool and, per method, which pool images it has maps for (maps, targets); plus skip notes."""
    from outputs import load_maps

    n = min(int(s["trust_images"]), len(ctx.files))
    pool = {"images": ctx.images[:n], "masks": None if ctx.masks is None else ctx.masks[:n],
            "files": list(ctx.files[:n]), "labels": ctx.labels[:n], "probs": ctx.probs()[:n],
            "seed_keys": [("selected", i) for i in range(n)]}
    methods: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for m in METHODS:
        path = ctx.out / "arrays" / f"{m}.npz"
        if not path.is_file():
            continue
        arr = load_maps(path)
        if list(arr["files"]) != list(ctx.files):
            skipped[m] = f"arrays/{m}.npz was made for other images ({', '.join(arr['files'][:3])}...)"
            continue
        methods[m] = {"idx": list(range(n)), "maps": fit_maps(arr["maps"][:n], ctx.input_size),
                      "targets": np.asarray(arr["targets"][:n])}
    methods["random"] = {"idx": list(range(n)), "targets": ctx.targets()[:n],
                         "maps": np.stack([ctx.rng("trust", "random", i).random((ctx.input_size, ctx.input_size))
                                           for i in range(n)]).astype(np.float32)}
    gt = _gt_pool(ctx) if is_full(ctx) else None
    if gt is not None:
        start, k = n, len(gt["files"])
        with torch.inference_mode():
            gt_probs = torch.softmax(ctx.infer_model()(gt["images"].to(ctx.device)).float(), 1).cpu().numpy()
        pool = {"images": torch.cat([pool["images"], gt["images"]]),
                "masks": None if pool["masks"] is None else np.concatenate([pool["masks"], gt["masks"]]),
                "files": pool["files"] + gt["files"], "labels": np.concatenate([pool["labels"], gt["labels"]]),
                "probs": np.concatenate([pool["probs"], gt_probs]),
                "seed_keys": pool["seed_keys"] + [("gt", j) for j in range(k)]}
        for m in list(methods):
            maps = gt_maps = None
            if m == "random":
                gt_maps = np.stack([ctx.rng("trust", "random-gt", j).random((ctx.input_size, ctx.input_size))
                                    for j in range(k)]).astype(np.float32)
            else:
                maps = _extra_maps(ctx, m, gt["images"], gt["labels"], gt["files"], gt["indices"])
                gt_maps = None if maps is None else fit_maps(maps, ctx.input_size)
            if gt_maps is None:
                continue
            methods[m] = {"idx": methods[m]["idx"] + list(range(start, start + k)),
                          "maps": np.concatenate([methods[m]["maps"], gt_maps]),
                          "targets": np.concatenate([methods[m]["targets"], gt["labels"]])}
    return pool, methods, skipped


def score(ctx, pool: dict[str, Any], entry: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    """Per-image deletion/insertion AUCs (and curves) and ground-truth scores of one method's maps."""
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
        keep = [k for k in range(len(idx)) if masks[k].any()]   # an empty mask has no inside to point at
        out["gt_files"] = [out["files"][k] for k in keep]
        out["pointing_game"] = np.array([pointing_game(entry["maps"][k], masks[k]) for k in keep])
        out["mass_in_mask"] = np.array([mass_in_mask(entry["maps"][k], masks[k]) for k in keep])
        out["mass_in_mask_ratio"] = out["mass_in_mask"] / np.array([masks[k].mean() for k in keep])
    return out


def sanity(ctx, s: dict[str, Any]) -> dict[str, Any]:
    """The cascading randomisation of the gradient methods on the first `sanity_images` selected images."""
    k = min(int(s["sanity_images"]), len(ctx.files))
    layer_name = saliency.gradcam_layer_name(ctx) if ctx.args.layer or ctx.conv_layers() else None
    bs, st = ctx.settings["grad_batch_size"], ctx.settings
    indices = list(ctx.indices[:k])
    methods: dict[str, MapFn] = {
        "vanilla": lambda m, layer, x, t: saliency.vanilla(m, x, t, bs),
        "smoothgrad": lambda m, layer, x, t: saliency.smoothgrad(
            m, x, t, int(s["sanity_smoothgrad_n"]), st["smoothgrad_sigma"], ctx.seed, bs, indices=indices),
        "integrated_gradients": lambda m, layer, x, t: saliency.integrated_gradients(
            m, x, t, int(s["sanity_ig_steps"]), st["ig_baseline"], bs)[0],
        "gradcam": lambda m, layer, x, t: saliency.gradcam(m, layer, x, t, bs),
    }
    if layer_name is None:   # no 4-D layer: Grad-CAM was skipped, the other methods still get their check
        del methods["gradcam"]
    seed = int(ctx.rng("trust", "sanity").integers(0, 2 ** 62))
    res = cascade(ctx.model, ctx.net, layer_name, ctx.images[:k], ctx.targets()[:k], methods, seed)
    res["files"] = list(ctx.files[:k])
    res["gradcam_layer"] = layer_name
    return res


def tables(scores: dict[str, dict], san: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Method x metric summaries (mean, std, n) and the sanity verdict."""
    rows: dict[str, dict[str, Any]] = {}
    for m, sc in scores.items():
        row = {metric: summary(list(sc.get(metric, []))) for metric in METRICS if metric != "sanity_spearman"}
        if m in san["spearman"]:
            row["sanity_spearman"] = summary(list(san["spearman"][m][-1]))
            row["sanity_check"] = "fails sanity check" if row["sanity_spearman"]["mean"] >= SANITY_FAIL else "passes"
        else:
            row["sanity_spearman"] = summary([])
            row["sanity_check"] = "not applicable"
        rows[m] = row
    return rows


DEFINITIONS = {
    "deletion_auc": "area under the target-class probability as the highest-ranked pixels are set to 0, "
                    "x = fraction of pixels removed in [0,1] (lower = more faithful)",
    "insertion_auc": "area under the target-class probability as the highest-ranked pixels are pasted onto a "
                     "blurred copy (sigma = insertion_blur x image side), x in [0,1] (higher = more faithful)",
    "pointing_game": "1 when the map's maximum lies inside the ground-truth mask (tied maxima: fraction inside); "
                     "a constant map (e.g. all zero) scores 0",
    "mass_in_mask": "fraction of the map's positive mass inside the mask; a map with no positive mass scores 0",
    "mass_in_mask_ratio": "mass_in_mask divided by the mask's share of the image (1 = no better than uniform)",
    "sanity_spearman": "Spearman rank correlation of |map| after re-initialising every parameterised layer "
                       "(cascading from the output) with |map| of the trained model; a constant map scores 0; "
                       f">= {SANITY_FAIL} fails the sanity check",
    "ranking": "pixels ranked by raw map value, highest first; ties broken by a seeded random permutation",
    "random": "baseline: a uniform random map per image, seeded by (seed, 'trust', 'random', image)",
}


def _fmt(cell: dict[str, Any]) -> str:
    """'mean ± std' or '-'."""
    return "-" if cell["n"] == 0 else f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def shown_image(scores: dict[str, dict]) -> int:
    """Pool index of the image every method scored whose (insertion - deletion) AUC varies most across methods."""
    common = sorted(set.intersection(*(set(sc["idx"]) for sc in scores.values())))
    spread = [np.std([sc["insertion_auc"][sc["idx"].index(i)] - sc["deletion_auc"][sc["idx"].index(i)]
                      for sc in scores.values()]) for i in common]
    return common[int(np.argmax(spread))]


def draw_curves(ctx, pool: dict[str, Any], scores: dict[str, dict], rows: dict[str, dict], s: dict[str, Any],
                path: Path) -> Path:
    """trust_curves.png: the first image, its deletion and insertion curves per method, and the method x metric table."""
    import draw

    fig, axes = draw.figure(2, 3, cell=(4.0, 3.3), title="How far to trust each explanation: deletion / insertion "
                            f"(Petsiuk et al. 2018, {s['deletion_steps']} steps), ground truth, sanity check")
    i = shown_image(scores)
    first = {m: sc for m, sc in scores.items() if i in sc["idx"]}
    at = {m: sc["idx"].index(i) for m, sc in first.items()}
    p = pool["probs"][i]
    target = int(scores["random"]["targets"][at["random"]])
    draw.show_image(axes[0, 0], pool["images"][i], draw.caption(pool["files"][i], ctx.class_names, target,
                                                                  int(p.argmax()), float(p.max()), int(pool["labels"][i]))
                    + "\n(the image where the methods differ most)")
    colours = {m: f"C{i}" for i, m in enumerate(METHODS)} | {"random": "0.45"}
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
    cols = ["deletion_auc", "insertion_auc", "pointing_game", "mass_in_mask", "mass_in_mask_ratio",
            "sanity_spearman"]
    heads = ["deletion AUC ↓", "insertion AUC ↑", "pointing game ↑", "mass in mask ↑", "mass / mask share ↑",
             "sanity Spearman ↓"]
    text = [[_fmt(rows[m][c]) for c in cols] + [rows[m]["sanity_check"]] for m in rows]
    counts = [f"{m} (n={rows[m]['deletion_auc']['n']})" for m in rows]
    t = tab.table(cellText=text, rowLabels=counts, colLabels=heads + ["sanity check"], cellLoc="center",
                  bbox=[0.14, 0.0, 0.86, 0.92])
    t.auto_set_font_size(False)
    t.set_fontsize(7)
    for r, m in enumerate(rows, start=1):
        if rows[m]["sanity_check"] == "fails sanity check":
            for c in (len(cols) - 1, len(cols)):
                t[r, c].set_facecolor("#f4c7c3")
    tab.set_title(f"mean ± std over images (n = images scored per method; ground truth over the masked ones, "
                  "\n"
                  f"{rows['random']['pointing_game']['n']} for random; sanity Spearman after full randomisation over "
                  f"{max(r['sanity_spearman']['n'] for r in rows.values())} image(s)); random = uniform random map",
                  fontsize=8)
    draw.layout(fig)
    return draw.save(fig, path)


def draw_sanity(ctx, san: dict[str, Any], path: Path, max_steps: int = 9) -> Path:
    """sanity_check.png: the cascade of |maps| for the first sanity image and the mean Spearman curves."""
    import draw

    layers = san["layers"]
    steps = list(range(len(layers)))
    if len(steps) > max_steps + 1:   # keep the original, the last and evenly spaced steps between
        steps = sorted(set(np.linspace(0, len(layers) - 1, max_steps + 1).round().astype(int).tolist()))
    methods = list(san["maps"])
    fig, axes = draw.figure(len(methods) + 2, len(steps) + 1, cell=(1.45, 1.5), extra_width=0.6,
                            title="Sanity check (Adebayo et al. 2018): maps as the network's layers are re-initialised "
                                  "from the output down (each |map| scaled to its own 99.5th percentile)")
    img = ctx.images[0]
    t = int(ctx.targets()[0])
    p = ctx.probs()[0]
    draw.show_image(axes[0, 0], img, draw.caption(ctx.files[0], ctx.class_names, t, int(p.argmax()), float(p.max()),
                                                  int(ctx.labels[0])))
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
        curve.plot(x, v.mean(1), marker="o", ms=3, color=f"C{METHODS.index(m)}", label=m)
        if v.shape[1] > 1:
            curve.fill_between(x, v.min(1), v.max(1), color=f"C{METHODS.index(m)}", alpha=0.15)
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


def task_trust(ctx) -> list[Path]:
    """Deletion/insertion AUC, ground-truth scores and the sanity check for every attribution array in the output."""
    from errors import Skipped
    from outputs import write_csv, write_json

    s = trust_settings(ctx)
    pool, methods, skipped = _collect(ctx, s)
    if len(methods) == 1:
        raise Skipped("no attribution arrays for these images in the output folder (run the attribution tasks first)")
    scores = {m: score(ctx, pool, e, s) | {"targets": e["targets"], "idx": e["idx"]} for m, e in methods.items()}
    san = sanity(ctx, s)
    rows = tables(scores, san)
    per_image = {m: {"files": sc["files"], "deletion_auc": sc["deletion_auc"], "insertion_auc": sc["insertion_auc"]}
                 | ({"gt_files": sc["gt_files"], **{k: sc[k] for k in ("pointing_game", "mass_in_mask",
                                                                           "mass_in_mask_ratio")}}
                    if "gt_files" in sc else {}) for m, sc in scores.items()}
    record = {"mode": "full" if is_full(ctx) else "cheap", "settings": s, "methods": rows, "metrics": list(METRICS),
              "definitions": DEFINITIONS, "per_image": per_image, "skipped": skipped,
              "sanity": {"files": san["files"], "layers": san["layers"], "gradcam_layer": san["gradcam_layer"],
                         "threshold": SANITY_FAIL, "correlation": "Spearman of absolute values",
                         "spearman": {m: v.tolist() for m, v in san["spearman"].items()}}}
    header = ["method"] + [f"{m}_{k}" for m in METRICS for k in ("mean", "std", "n")] + ["sanity_check"]
    csv_rows = [[m] + [("" if r[metric][k] is None else (round(r[metric][k], 6) if k != "n" else r[metric][k]))
                       for metric in METRICS for k in ("mean", "std", "n")] + [r["sanity_check"]]
                for m, r in rows.items()]
    ctx.results["trust"] = {"mode": record["mode"], "images": len(pool["files"]),
                            "settings": s, "skipped": skipped,
                            "methods": {m: {metric: r[metric]["mean"] for metric in METRICS} |
                                        {"sanity_check": r["sanity_check"]} for m, r in rows.items()}}
    return [draw_curves(ctx, pool, scores, rows, s, ctx.out / "trust_curves.png"),
            draw_sanity(ctx, san, ctx.out / "sanity_check.png"),
            write_json(ctx.out / "trust.json", record),
            write_csv(ctx.out / "trust.csv", header, csv_rows)]
