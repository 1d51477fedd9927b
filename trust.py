"""The trust task: deletion/insertion, ground truth, the shortcut score and the sanity check of every registered
method on a pool of images, against a random map, written to trust.json, trust.csv, trust_curves.png and
sanity_check.png. The metrics themselves are pure functions in metrics.py."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import imageops
import metrics
from records import TrustResult
from settings import TRUST_KEYS


def trust_counts(macs: int | None, s: dict[str, Any]) -> dict[str, int]:
    """The trust task's image counts for a model of `macs` multiply-adds per image (never timing).

    factor = min(1, trust_ref_macs / macs). Validation images per class: floor(trust_per_class x factor); of these
    LIME and SHAP take floor(trust_sampled_per_class x factor), at least one per class while any are taken; the
    sanity check: max(1, floor(sanity_images x factor)). The demo model (74 M multiply-adds, under the 100 M
    reference) keeps 3 / 1 / 8; the full-size hw3 (1.1 G) gets 0 / 0 / 1, i.e. the selected images only, as before.
    """
    factor = 1.0 if not macs else min(1.0, float(s["trust_ref_macs"]) / float(macs))
    per_class = int(math.floor(s["trust_per_class"] * factor + 1e-9))
    sampled = min(per_class, max(1, int(math.floor(s["trust_sampled_per_class"] * factor + 1e-9)))) if per_class else 0
    return {"per_class": per_class, "sampled_per_class": sampled,
            "sanity": max(1, int(math.floor(s["sanity_images"] * factor + 1e-9))), "factor": factor}


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


def shortcut_class(ctx) -> int | None:
    """The class whose training images carry the mark most often (share of its images), or None without marks."""
    import dataset

    d = dataset.mark_dir(ctx.data, "training")
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
    has = (lambda f: dataset.mark_path(ctx.data, "validation", f).is_file())
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

    val = dataset.open_split(ctx.data, "validation")
    idx = [val.files.index(f) for f in files]
    images, masks = dataset.load_batch(val, idx, ctx.input_size, ctx.cv2_mode, ctx.resize)
    out = {"images": images, "masks": masks, "labels": np.array([val.labels[i] for i in idx]),
           "files": [f"validation/{f}" for f in files], "seed_keys": [("val", f) for f in files],
           "probs": ctx.predict(images)}
    if marks:
        out["marks"] = np.stack([dataset.load_mask(dataset.mark_path(ctx.data, "validation", f), ctx.input_size,
                                                   ctx.resize) for f in files])
    return out


def pools(ctx, s: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, int]]:
    """The scored pool (validation images per class as the model's cost allows, else the selected images), the
    marked validation images of the shortcut score (None without marks), and the counts used."""
    import dataset

    counts = trust_counts(ctx.macs(), s)
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
    sc = shortcut_class(ctx) if counts["per_class"] and dataset.mark_dir(ctx.data, "validation") is not None else None
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
        return imageops.fit_maps(ctx.attribute(method).maps[idx], *size)
    return imageops.fit_maps(ctx.attribute(method, pool["images"][idx], pool["targets"][idx],
                                                  [pool["files"][i] for i in idx]).maps, *size)


def _collect(ctx, s: dict[str, Any], pool: dict[str, Any], marked: dict[str, Any] | None,
             counts: dict[str, int]) -> tuple[dict[str, dict], dict[str, dict], dict[str, str]]:
    """Per registered method (and random): maps of its pool images and of the marked images; skip notes."""
    from errors import Skipped

    methods: dict[str, dict] = {}
    marks: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for m in ctx.method_names() + ["random"]:
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
    """Per-image MoRF (deletion), LeRF and insertion AUCs (and curves), the saturation flags and ground-truth
    scores of one method's maps.

    Ground truth counts the images with a non-empty object mask that the model classifies correctly."""
    idx = entry["idx"]
    ranks = np.stack([metrics.pixel_ranks(m, ctx.rng("trust", "ties", *pool["seed_keys"][p]))
                      for m, p in zip(entry["maps"], idx)])
    images = pool["images"][idx]
    noise = metrics.noise_fields(tuple(images.shape[1:]), [_noise_seed(ctx, pool, p) for p in idx],
                                 float(s["road_noise"]))
    out: dict[str, Any] = {"files": [pool["files"][p] for p in idx]}
    for mode in metrics.MODES:
        x, probs = metrics.perturbation_curves(ctx.infer_model(), images, ranks, entry["targets"], mode,
                                               int(s["deletion_steps"]), int(s["batch_size"]),
                                               float(s["insertion_blur"]), fill=s["deletion_fill"], noise=noise)
        out[f"{mode}_x"], out[f"{mode}_curves"], out[f"{mode}_auc"] = x, probs, metrics.auc(x, probs)
    out["x"] = out["deletion_x"]
    out["blur_probability"] = out["insertion_curves"][:, 0]
    out["saturated"] = metrics.saturated(out["blur_probability"])
    if pool["masks"] is not None:
        masks = pool["masks"][idx]
        correct = [pool["labels"][p] < 0 or pool["probs"][p].argmax() == pool["labels"][p] for p in idx]
        keep = [k for k in range(len(idx)) if masks[k].any() and correct[k]]
        out["gt_files"] = [out["files"][k] for k in keep]
        out["pointing_game"] = np.array([metrics.pointing_game(entry["maps"][k], masks[k]) for k in keep])
        out["mass_in_mask"] = np.array([metrics.mass_in_mask(entry["maps"][k], masks[k]) for k in keep])
        out["mass_in_mask_ratio"] = out["mass_in_mask"] / np.array([masks[k].mean() for k in keep]) if keep else \
            np.zeros(0)
    return out


def _noise_seed(ctx, pool: dict[str, Any], p: int) -> int:
    """The seed of pool image p's ROAD noise field: one per image, the same for every method and order."""
    return int(ctx.rng("trust", "road-noise", *pool["seed_keys"][p]).integers(0, 2 ** 62))


def shortcut_scores(marked: dict[str, Any], marks: dict[str, dict], s: dict[str, Any], ctx) -> dict[str, Any]:
    """Per method: share of positive attribution on the mark, for the shortcut class and for the other classes."""
    sc = marked["shortcut_class"]
    out: dict[str, Any] = {}
    for m, e in marks.items():
        share = np.array([metrics.mass_in_mask(mp, marked["marks"][p]) for mp, p in zip(e["maps"], e["idx"])])
        area = np.array([marked["marks"][p].mean() for p in e["idx"]])
        own = np.array([marked["labels"][p] == sc for p in e["idx"]])
        rng = ctx.rng("trust", "bootstrap", "shortcut", m)
        out[m] = {"shortcut_class": metrics.bootstrap(share[own], rng, s["trust_bootstrap"]),
                  "other_classes": metrics.bootstrap(share[~own], rng, s["trust_bootstrap"]),
                  "mark_area_share": float(area.mean()) if area.size else None,
                  "files": [marked["files"][p] for p in e["idx"]], "share": share.tolist()}
        sc_cell = out[m]["shortcut_class"]
        out[m]["reveals_shortcut"] = bool(sc_cell["n"] >= metrics.MIN_INTERVAL_N and
                                          sc_cell["lo"] >= 2 * out[m]["mark_area_share"])
    return out


GAINS = {"deletion_gain": ("deletion_auc", -1), "morf_gain": ("deletion_auc", -1), "lerf_gain": ("lerf_auc", 1),
         "insertion_gain": ("insertion_auc", 1)}   # sign x (the method's AUC - random's); morf_gain = deletion_gain
CURVE_METRICS = ("deletion_auc", "lerf_auc", "insertion_auc")   # saturated images leave their means


def paired_indices(method_idx: list[int], random_idx: list[int], saturated: set[int]) -> tuple[list[int], list[int]]:
    """Positions in the method's and in random's scores of the pool images both scored, saturated ones left out."""
    pos = {p: k for k, p in enumerate(random_idx)}
    a = [k for k, p in enumerate(method_idx) if p in pos and p not in saturated]
    return a, [pos[method_idx[k]] for k in a]


def saturated_images(scores: dict[str, dict]) -> set[int]:
    """Pool indices of the saturated images (the flag depends on the image alone, not on the map)."""
    return {p for sc in scores.values() for p, flag in zip(sc["idx"], sc["saturated"]) if flag}


def vs_random(scores: dict[str, dict], ctx, s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Paired bootstrap per method over the unsaturated images both scored: MoRF (deletion) gain = random's
    AUC - the method's, LeRF and insertion gains = the method's AUC - random's."""
    if "random" not in scores:
        return {}
    ref = scores["random"]
    sat = saturated_images(scores)
    out: dict[str, dict[str, Any]] = {}
    for m, sc in scores.items():
        if m == "random":
            continue
        a, b = paired_indices(sc["idx"], ref["idx"], sat)
        out[m] = {g: metrics.paired_gain(sign * sc[metric][a], sign * ref[metric][b],
                                         ctx.rng("trust", "bootstrap", "vs-random", metric, m), s["trust_bootstrap"])
                  for g, (metric, sign) in GAINS.items()}
        out[m]["saturated_left_out"] = sum(p in sat for p in sc["idx"] if p in set(ref["idx"]))
        out[m]["files"] = [sc["files"][k] for k in a]
    return out


STOCHASTIC = ("lime", "shap", "smoothgrad")   # methods whose maps depend on the seed


def stability_scores(ctx) -> dict[str, dict[str, Any]]:
    """Per seeded method, on the figures' images: metrics.stability of the run's maps (--seed) against a second
    seed's (--seed + 1), per image and their mean (no interval: a handful of images)."""
    from errors import Skipped

    out: dict[str, dict[str, Any]] = {}
    for m in (m for m in STOCHASTIC if m in ctx.method_names()):
        try:
            first = ctx.attribute(m).maps
            extra = {"extra_labels": ctx.preds()} if m == "lime" else {}
            second = ctx.attribute(m, ctx.images, ctx.targets(), ctx.files, seed=ctx.seed + 1, **extra).maps
        except Skipped:
            continue
        pairs = np.array([metrics.stability(a, b) for a, b in zip(first, second)]).reshape(-1, 2)
        out[m] = {"files": list(ctx.files), "seeds": [ctx.seed, ctx.seed + 1], "spearman": pairs[:, 0].tolist(),
                  "iou_top5": pairs[:, 1].tolist(), "spearman_mean": float(pairs[:, 0].mean()),
                  "iou_top5_mean": float(pairs[:, 1].mean()), "n": len(pairs)}
    return out


def saturation(scores: dict[str, dict], pool: dict[str, Any]) -> dict[str, Any]:
    """trust.json's saturation record: the flag and the blurred image's probability per scored pool image."""
    probs: dict[int, float] = {}
    for sc in scores.values():
        probs.update({p: float(v) for p, v in zip(sc["idx"], sc["blur_probability"])})
    flagged = sorted(saturated_images(scores))
    return {"threshold": metrics.SATURATED, "handling": SATURATION_HANDLING, "n_saturated": len(flagged),
            "files": [pool["files"][p] for p in flagged],
            "images": {pool["files"][p]: {"blur_probability": v, "saturated": v >= metrics.SATURATED}
                       for p, v in sorted(probs.items())}}


SATURATION_HANDLING = ("excluded: saturated images leave the means of the deletion (MoRF), LeRF and insertion AUCs "
                       "and the gains over random, for every method alike (the flag depends on the image alone)")


def sanity(ctx, s: dict[str, Any], methods: list[str], pool: dict[str, Any], n: int) -> dict[str, Any]:
    """The cascading randomisation of the gradient methods on the pool's first n images (one per class first)."""
    k = min(n, len(pool["files"]))
    grads = [m for m in methods if m in ctx.method_names() and not ctx.method(m).forward_only]
    files = list(pool["files"][:k])
    fns: dict[str, metrics.MapFn] = {m: (lambda work, x, t, m=m: ctx.attribute(m, x, t, files, sanity=True,
                                                                            model=work).maps)
                                     for m in grads}
    seed = int(ctx.rng("trust", "sanity").integers(0, 2 ** 62))
    res = metrics.cascade(ctx.model, ctx.net, pool["images"][:k], pool["targets"][:k], fns, seed)
    res["files"] = files
    res["gradcam_layer"] = ctx.gradcam_layer() if "gradcam" in grads else None
    return res


def _unsaturated(sc: dict[str, Any], metric: str, sat: set[int]) -> np.ndarray:
    """A method's per-image values of a metric, the saturated images left out of the curve metrics."""
    v = np.asarray(sc.get(metric, []), dtype=np.float64)
    if metric not in CURVE_METRICS or not sat:
        return v
    return v[[p not in sat for p in sc["idx"]]]


def tables(scores: dict[str, dict], san: dict[str, Any], rng_of: Callable[[str, str], np.random.Generator] | None = None,
           resamples: int = 2000) -> dict[str, dict[str, Any]]:
    """Method x metric: mean, std, 95% bootstrap interval [lo, hi] and n, and the sanity verdict."""
    rng_of = rng_of or (lambda m, metric: np.random.default_rng([len(m), len(metric)]))
    rows: dict[str, dict[str, Any]] = {}
    sat = saturated_images(scores) if all("saturated" in sc for sc in scores.values()) else set()
    for m, sc in scores.items():
        row = {metric: metrics.bootstrap(_unsaturated(sc, metric, sat), rng_of(m, metric), resamples)
               for metric in metrics.METRICS if metric != "sanity_spearman"}
        if m in san["spearman"]:
            row["sanity_spearman"] = metrics.bootstrap(list(san["spearman"][m][-1]), rng_of(m, "sanity_spearman"), resamples)
            row["sanity_check"] = "fails sanity check" if row["sanity_spearman"]["mean"] >= metrics.SANITY_FAIL else "passes"
        else:
            row["sanity_spearman"] = metrics.bootstrap([], rng_of(m, "sanity_spearman"))
            row["sanity_check"] = "not applicable"
        rows[m] = row
    return rows


DEFINITIONS = {
    "protocol": "ROAD (Rong et al., ICML 2022) by default: removed pixels are imputed by noisy linear imputation "
                "(each the weighted mean of its 8 neighbours, direct 1/6, diagonal 1/12, solved as one linear "
                "system by a cascadic multigrid fill, plus Gaussian noise of std road_noise = 0.01 of the pixel "
                "range); deletion_steps = 16 equal steps, 0 .. 15/16 of the pixels removed (at 16/16 nothing is "
                "left to impute from); scored most relevant first (MoRF, 'deletion') and least relevant first (LeRF); "
                "deletion_fill = black sets the removed pixels to 0 at steps 0 .. 1 instead; insertion pastes the "
                "original pixels onto a Gaussian-blurred copy at steps 0 .. 1; every curve scores the softmax "
                "probability of the explained class (the image's true label on validation images)",
    "fill": "deletion_fill: road (default) or black",
    "noise": "road_noise: std of the Gaussian noise added to the imputed pixels, as a fraction of the [0,1] range; "
             "one noise field per image, seeded by (seed, 'trust', 'road-noise', image), shared by every method",
    "steps": "deletion_steps equal steps; ROAD removal at k/steps for k = 0 .. steps-1, black removal and insertion "
             "at k = 0 .. steps",
    "deletion_auc": "MoRF: mean height of the explained class's probability as the highest-ranked pixels are "
                    "removed (trapezoid area over x divided by x's range) (lower = more faithful)",
    "lerf_auc": "LeRF: the same as the lowest-ranked pixels are removed first (higher = more faithful)",
    "insertion_auc": "area under the explained class's softmax probability as the highest-ranked pixels are pasted "
                     "onto a blurred copy (sigma = insertion_blur x image side), x in [0,1] (higher = more faithful)",
    "saturation": f"an image is saturated when the explained probability on the fully blurred image (insertion's "
                  f"start) is >= {metrics.SATURATED}; " + SATURATION_HANDLING,
    "stability": "two seeds (--seed, --seed + 1) of one seeded method (lime, shap, "
                 "smoothgrad) on the figures' images: Spearman correlation of the two maps' values and the "
                 "intersection over union of their top 5% pixels; per image and the mean (no interval at n < 5)",
    "pointing_game": "1 when the map's maximum lies inside the ground-truth mask (tied maxima: fraction inside); "
                     "a constant map (e.g. all zero) scores 0; over correctly classified unmarked images",
    "mass_in_mask": "fraction of the map's positive mass inside the mask; a map with no positive mass scores 0",
    "mass_in_mask_ratio": "mass_in_mask divided by the mask's share of the image (1 = no better than uniform)",
    "sanity_spearman": "Spearman rank correlation of |map| after re-initialising every parameterised layer "
                       "(cascading from the output) with |map| of the trained model; a constant map scores 0; "
                       f">= {metrics.SANITY_FAIL} fails the sanity check",
    "interval": "95% percentile bootstrap interval of the mean over images (trust_bootstrap resamples, seeded by "
                "(seed, 'trust', 'bootstrap', method, metric)); n = images scored",
    "vs_random": "paired bootstrap over the unsaturated images both scored (LIME and SHAP's images: random is "
                 "taken on those): morf_gain = deletion_gain = random's MoRF AUC - the method's, lerf_gain = the "
                 "method's LeRF AUC - random's, insertion_gain = the method's insertion AUC - random's (> 0: better "
                 "than random); n = images paired",
    "shortcut": "share of the map's positive mass on the mark (masks_mark/validation), over validation images that "
                "carry it, explaining their true label; for the shortcut class (the class whose training images carry "
                "the mark most often) and for the other classes; reveals_shortcut: the shortcut class's mean share "
                ">= 2x the mark's area share",
    "images": "validation images per class by the model's multiply-adds (trust.trust_counts): LIME and SHAP on the "
              "first trust_sampled_per_class of every class at their figures' sample counts; without validation "
              "images, the first trust_images selected images",
    "ranking": "pixels ranked by raw map value, highest first; ties broken by a seeded random permutation",
    "random": "baseline: a uniform random map per image, seeded by (seed, 'trust', 'random', image)",
}


def _fmt(cell: dict[str, Any]) -> str:
    """'mean [lo, hi]', 'mean (n=3)' below metrics.MIN_INTERVAL_N images, or '-'."""
    if cell["n"] == 0:
        return "-"
    if cell["n"] < metrics.MIN_INTERVAL_N:
        return f"{cell['mean']:.3f} (n={cell['n']})"
    return f"{cell['mean']:.3f} [{cell['lo']:.3f}, {cell['hi']:.3f}]"


def shown_image(scores: dict[str, dict]) -> int:
    """Pool index of a typical image: of the unsaturated images every method scored, the one whose
    (insertion - MoRF) AUC spread across methods is the median (an example, not the outlier)."""
    sat = saturated_images(scores) if all("saturated" in sc for sc in scores.values()) else set()
    common = sorted(set.intersection(*(set(sc["idx"]) for sc in scores.values())))
    common = [i for i in common if i not in sat] or common
    spread = np.array([np.std([sc["insertion_auc"][sc["idx"].index(i)] - sc["deletion_auc"][sc["idx"].index(i)]
                               for sc in scores.values()]) for i in common])
    return common[int(np.argsort(spread, kind="stable")[(len(spread) - 1) // 2])]


def _title(ctx, m: str) -> str:
    """A method's display title ('random' for the random map)."""
    return "random" if m == "random" else ctx.method(m).title


def _forest(ax, gains: dict[str, dict], key: str, names: dict[str, str], title: str) -> None:
    """One paired gain per method as a dot with its 95% interval (a dot alone below metrics.MIN_INTERVAL_N images),
    and the line at 0 (no better than random)."""
    from matplotlib.ticker import MaxNLocator

    methods = [m for m in gains if isinstance(gains[m].get(key), dict) and gains[m][key]["n"]]
    for y, m in enumerate(methods):
        g = gains[m][key]
        if g["n"] >= metrics.MIN_INTERVAL_N:
            ax.plot([g["lo"], g["hi"]], [y, y], color="k", lw=1.2)
        ax.plot(g["mean"], y, "o", ms=3.5, color="C3" if g["n"] >= metrics.MIN_INTERVAL_N and g["lo"] > 0 else "0.5")
    ax.axvline(0, color="0.4", lw=0.8, ls="--")
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.set_yticks(range(len(methods)))
    ax.set_yticklabels([f"{names[m]} (n={gains[m][key]['n']})" for m in methods], fontsize=6.5)
    ax.set_ylim(len(methods) - 0.5, -0.5)
    ax.tick_params(axis="x", labelsize=6)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=7)


def draw_curves(ctx, pool: dict[str, Any], scores: dict[str, dict], rows: dict[str, dict], s: dict[str, Any],
                path: Path, gains: dict[str, dict] | None = None, shortcut: dict[str, Any] | None = None,
                stable: dict[str, dict] | None = None) -> Path:
    """trust_curves.png: a typical image with its MoRF and insertion curves per method, then each method's paired
    gains over the random map with their intervals (the full tables are trust.csv and the report's)."""
    import draw

    road_fill = s["deletion_fill"] == "road"
    fig = draw.blank(5.4)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1.0])
    fig.suptitle("How far to trust each explanation:\nremoval "
                 f"({'ROAD' if road_fill else 'black fill'}, {s['deletion_steps']} steps) and insertion, "
                 "against a random map", fontsize=draw.STYLE["figure.titlesize"])
    head = top.subplots(1, 3, gridspec_kw={"width_ratios": [0.8, 1, 1]})
    i = shown_image(scores)
    first = {m: sc for m, sc in scores.items() if i in sc["idx"]}
    at = {m: sc["idx"].index(i) for m, sc in first.items()}
    p = pool["probs"][i]
    target = int(scores["random"]["targets"][at["random"]])
    head[0].set_xticks([])
    head[0].set_yticks([])
    draw.show_image(head[0], pool["images"][i], draw.caption(pool["files"][i], ctx.class_names, target,
                                                             int(p.argmax()), float(p.max()), int(pool["labels"][i]))
                    + "\n(typical: median spread)")
    head[0].title.set_fontsize(6.5)
    colours = {m: f"C{i}" for i, m in enumerate(ctx.method_names())} | {"random": "0.45"}
    for ax, mode, better, xlabel in ((head[1], "deletion", "lower", "removed (most relevant first)"),
                                     (head[2], "insertion", "higher", "inserted")):
        for m, sc in first.items():
            ax.plot(sc[f"{mode}_x"], sc[f"{mode}_curves"][at[m]], color=colours.get(m, "k"),
                    ls="--" if m == "random" else "-", lw=1.0, label=_title(ctx, m))
        ax.set_xticks(np.linspace(0, 1, 6))
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel(f"share of pixels {xlabel}", fontsize=6.5)
        ax.set_ylabel("p(explained class)", fontsize=6.5)
        ax.set_title(f"{'MoRF' if mode == 'deletion' else 'insertion'} on this image ({better} AUC = better)",
                     fontsize=7)
    top.legend(*head[1].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=6.5,
               frameon=False)
    names = {m: _title(ctx, m) for m in rows}
    gains = gains or {}
    forest = bottom.subplots(1, 3, sharey=True)
    for ax, key, title in ((forest[0], "morf_gain", "MoRF gain: random − method"),
                           (forest[1], "lerf_gain", "LeRF gain: method − random"),
                           (forest[2], "insertion_gain", "insertion gain: method − random")):
        _forest(ax, gains, key, names, title + "\n(AUC, paired; > 0 = better)")
    for ax in forest[1:]:
        ax.tick_params(axis="y", left=False, labelleft=False)
    return draw.save(fig, path)


def draw_sanity(ctx, san: dict[str, Any], pool: dict[str, Any], path: Path, max_steps: int = 5) -> Path:
    """sanity_check.png: the cascade of |maps| for the first sanity image and the mean Spearman curves."""
    import draw

    layers = san["layers"]
    steps = list(range(len(layers)))
    if len(steps) > max_steps + 1:   # keep the original, the last and evenly spaced steps between
        steps = sorted(set(np.linspace(0, len(layers) - 1, max_steps + 1).round().astype(int).tolist()))
    methods = list(san["maps"])
    fig = draw.blank(1.0 * len(methods) + 2.35)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0 * len(methods) + 0.45, 1.9])
    fig.suptitle("Sanity check (Adebayo et al. 2018): maps as the network's layers are re-initialised\n"
                 "from the output down (each |map| scaled to its own 99.5th percentile)",
                 fontsize=draw.STYLE["figure.titlesize"])
    axes = top.subplots(len(methods), len(steps) + 1, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    img = pool["images"][0]
    t = int(pool["targets"][0])
    p = pool["probs"][0]
    draw.show_image(axes[0, 0], img, draw.caption(pool["files"][0], ctx.class_names, t, int(p.argmax()),
                                                  float(p.max()), int(pool["labels"][0])))
    axes[0, 0].title.set_fontsize(7)
    for ax in axes[1:, 0]:
        ax.axis("off")
    for r, m in enumerate(methods):
        axes[r, 1].set_ylabel(_title(ctx, m), fontsize=7)
        for c, k in enumerate(steps, start=1):
            shown = draw.normalize(np.abs(san["maps"][m][k, 0]))
            im = draw.show_map(axes[r, c], shown, vrange=(0.0, 1.0))
            if r == 0:
                axes[r, c].set_title("trained" if k == 0 else f"randomised\ndown to {layers[k]}", fontsize=7)
            axes[r, c].set_xlabel(f"ρ = {san['spearman'][m][k, 0]:.2f}", fontsize=7, labelpad=1)
    draw.colorbar(top, im, axes[:, -1].tolist(), "|map| / own 99.5th percentile")
    curve = bottom.subplots()
    x = np.arange(len(layers))
    for m in methods:
        v = san["spearman"][m]
        colour = f"C{ctx.method_names().index(m)}"
        curve.plot(x, v.mean(1), marker="o", ms=3, color=colour, label=_title(ctx, m))
        if v.shape[1] > 1:
            curve.fill_between(x, v.min(1), v.max(1), color=colour, alpha=0.15)
    curve.axhline(metrics.SANITY_FAIL, color="crimson", ls="--", lw=1, label=f"fails at or above {metrics.SANITY_FAIL}")
    curve.set_xticks(x)
    curve.set_xticklabels(["trained"] + [f"→ {n}" for n in layers[1:]], fontsize=6.5, rotation=30, ha="right")
    curve.set_yticks(np.linspace(-1, 1, 5))
    curve.tick_params(axis="y", labelsize=6.5)
    curve.set_ylim(-1.05, 1.05)
    curve.grid(alpha=0.3)
    curve.set_xlabel("layers re-initialised, from the output down", fontsize=7)
    curve.set_ylabel("Spearman ρ of |map|\nwith the trained map", fontsize=7)
    curve.set_title(f"rank correlation with the trained model's map (mean over {len(san['files'])} image(s)"
                    f"{', band = min..max' if len(san['files']) > 1 else ''}); Grad-CAM at {san['gradcam_layer']}",
                    fontsize=7)
    bottom.legend(*curve.get_legend_handles_labels(), loc="outside right center", fontsize=6.5, frameon=False)
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
    stable = stability_scores(ctx)
    shortcut = shortcut_scores(marked, marks, s, ctx) if marked is not None else {}
    if marked is not None:
        ctx.cache["trust_shortcut_class"] = marked["shortcut_class"]
    gt_keys = ("gt_files", "pointing_game", "mass_in_mask", "mass_in_mask_ratio")
    per_image = {m: {"files": sc["files"], "saturated": sc["saturated"]} | {k: sc[k] for k in CURVE_METRICS}
                 | {k: sc[k] for k in gt_keys if "gt_files" in sc} for m, sc in scores.items()}
    images = {m: len(e["idx"]) for m, e in methods.items()}
    record = {"mode": "full" if is_full(ctx) else "cheap", "settings": s, "counts": counts, "source": pool["source"],
              "images_per_method": images, "methods": rows, "metrics": list(metrics.METRICS), "vs_random": gains,
              "shortcut": {"class": ctx.class_names[marked["shortcut_class"]] if marked is not None else None,
                           "methods": shortcut},
              "definitions": DEFINITIONS, "per_image": per_image, "skipped": skipped,
              "saturation": saturation(scores, pool), "stability": stable,
              "sanity": {"files": san["files"], "layers": san["layers"], "gradcam_layer": san["gradcam_layer"],
                         "threshold": metrics.SANITY_FAIL, "correlation": "Spearman of absolute values",
                         "spearman": {m: v.tolist() for m, v in san["spearman"].items()}}}
    stats = ("mean", "lo", "hi", "n")
    header = (["method"] + [f"{m}_{k}" for m in metrics.METRICS for k in stats] + ["sanity_check"]
              + [f"{g}_{k}" for g in GAINS for k in stats]
              + [f"mark_{g}_{k}" for g in ("shortcut_class", "other_classes") for k in stats] + ["reveals_shortcut"]
              + ["saturated_left_out", "stability_spearman_mean", "stability_iou_top5_mean", "stability_n"])
    empty = {k: None for k in stats} | {"n": 0}
    csv_rows = [[m] + [_cell(r[metric], k) for metric in metrics.METRICS for k in stats] + [r["sanity_check"]]
                + [_cell(gains.get(m, {}).get(g, empty), k) for g in GAINS for k in stats]
                + [_cell(shortcut.get(m, {}).get(g, empty), k) for g in ("shortcut_class", "other_classes")
                   for k in stats] + [shortcut[m]["reveals_shortcut"] if m in shortcut else ""]
                + [gains.get(m, {}).get("saturated_left_out", "")]
                + [round(stable[m][k], 6) if m in stable else "" for k in ("spearman_mean", "iou_top5_mean")]
                + [stable[m]["n"] if m in stable else ""]
                for m, r in rows.items()]
    files = [draw_curves(ctx, pool, scores, rows, s, ctx.out / "trust_curves.png", gains, shortcut, stable),
             draw_sanity(ctx, san, pool, ctx.out / "sanity_check.png"),
             write_json(ctx.out / "trust.json", record),
             write_csv(ctx.out / "trust.csv", header, csv_rows)]
    return TrustResult(files=files, precision=ctx.precision, mode=record["mode"], images=len(pool["files"]),
                       settings=s, skipped=skipped, source=pool["source"], images_per_method=images,
                       sanity_images=len(san["files"]), macs=int(counts["macs"]),
                       methods={m: {metric: r[metric]["mean"] for metric in metrics.METRICS} |
                                {f"{metric}_ci": [r[metric]["lo"], r[metric]["hi"]] for metric in metrics.METRICS} |
                                {"sanity_check": r["sanity_check"]} for m, r in rows.items()},
                       vs_random={m: {g: [v[g]["lo"], v[g]["hi"]] for g in GAINS} for m, v in gains.items()},
                       shortcut_class=record["shortcut"]["class"],
                       shortcut={m: {"shortcut_class": v["shortcut_class"]["mean"],
                                     "other_classes": v["other_classes"]["mean"],
                                     "reveals_shortcut": v["reveals_shortcut"]} for m, v in shortcut.items()})
