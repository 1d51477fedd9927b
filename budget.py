"""Time planning: a quick throughput probe, a cost model of each task, and the opt-in --time-budget planner.

Default runs never adapt to timing (reruns must draw the same bytes): without --time-budget the probe only
feeds a warning when the run is predicted to exceed 9 minutes. With --time-budget the sample counts are scaled
down just as far as needed, and every change is recorded in run.json and the report.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

import explain
import trust
from deep_dream import CLASSVIZ_MAX
from errors import UserError

WARN_SECONDS = 540.0
# Drawing and saving a task's figures, which no probe sees (bench/run.py: report 6 s, most tasks 0.3-1 s).
DRAW_SECONDS = 0.6
# Settings the planner may scale down, with the floor below which an explanation stops being worth drawing.
SCALABLE = {"lime_samples": 100, "lime_class_samples": 30, "shap_max_evals": 500, "smoothgrad_n": 4, "ig_steps": 8,
            "deletion_steps": 8, "filter_steps": 20, "robust_steps": 16, "classviz_steps": 12, "dream_steps": 3,
            "trust_images": 1, "sanity_smoothgrad_n": 2, "sanity_ig_steps": 4, "trust_ref_macs": 1}


def rate(model: nn.Module, device: torch.device, size: int, batch: int, grad: bool, seconds: float = 0.5) -> float:
    """Images per second of forward passes (or forward + input-gradient passes) at one batch size."""
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    x.requires_grad_(grad)  # a private generator: the probe leaves torch's global random state alone
    n, t0, first = 0, 0.0, True
    while True:
        with torch.set_grad_enabled(grad):
            out = model(x)
            if grad:  # input gradients only, as the explainers take them
                torch.autograd.grad(out[:, 0].sum(), x)
        if first:  # the first pass warms caches and allocators: not counted
            first, t0 = False, time.perf_counter()
            continue
        n += batch
        if time.perf_counter() - t0 > seconds or n >= 256:
            break
    return n / max(time.perf_counter() - t0, 1e-9)


def probe(model: nn.Module, device: torch.device, size: int, s: dict[str, Any], seconds: float = 1.0,
          forward_model: nn.Module | None = None) -> dict[str, float]:
    """Images per second for forward passes (at batch_size; through forward_model when given, e.g. bf16) and
    forward+backward passes (at grad_batch_size)."""
    return {"forward": rate(forward_model or model, device, size, s["batch_size"], False, seconds / 2),
            "backward": rate(model, device, size, s["grad_batch_size"], True, seconds / 2)}


def decode_seconds(folder, size: int, cv2_mode: bool, n: int = 8, resize: Any = None) -> float:
    """Median seconds to decode and resize one image of a split (a few of its first files)."""
    import dataset

    times = []
    for name in dataset.list_images(folder)[:n]:
        t0 = time.perf_counter()
        dataset.load_image(folder / name, size, cv2_mode, resize or dataset.STRETCH)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def passes(task: str, s: dict[str, Any], n_images: int, n_classes: int, n_eval: int, n_layers: int = 13, *,
           size: int = 128, n_classviz: int | None = None, macs: int | None = None) -> tuple[float, float]:
    """(forward images, forward+backward images) a task costs under settings s (full-model equivalents).

    n_classes bounds what the class tasks draw: lime_classes explains every class up to confusion.MAX_GRID, else
    confusion.LIME_CLASS_ROWS; classviz draws n_classviz classes (default: up to deep_dream's CLASSVIZ_MAX).
    The factors below are bench/run.py's measured times over its pass counts, for hw3 and hw5ta alike.
    """
    from confusion import LIME_CLASS_ROWS, MAX_GRID

    lime_rows = n_classes if n_classes <= MAX_GRID else LIME_CLASS_ROWS
    n_classviz = min(n_classes, CLASSVIZ_MAX) if n_classviz is None else n_classviz
    methods = len(explain.method_names()) + 1  # maps scored by the trust task, the random baseline included
    tc = trust.trust_counts(macs, s)
    if macs is None:   # the model's cost unknown: the selected images only
        tc = tc | {"per_class": 0, "sampled_per_class": 0}
    val, val_sampled = n_classes * tc["per_class"], n_classes * tc["sampled_per_class"]
    # the marked images of the shortcut score: up to per_class of the shortcut class, sampled_per_class of the others
    # (LIME and SHAP: one of the shortcut class, one other)
    mark, mark_sampled = tc["per_class"] + (n_classes - 1) * tc["sampled_per_class"], 2 * (tc["sampled_per_class"] > 0)
    trust_images = val if val else min(n_images, s["trust_images"])
    trust_sampled = val_sampled if val else 0        # the selected images' LIME / SHAP maps are the figures' own
    grad_per_image = 1 + s["smoothgrad_n"] + s["ig_steps"] + 1 + 1     # vanilla, SmoothGrad, IG, Grad-CAM
    fwd_per_image = occlusion_positions(size, s["occlusion_patch"], s["occlusion_stride"]) ** 2
    cost = {
        "confusion": (n_eval, 0),
        "saliency": (0, n_images),
        "smoothgrad": (0, n_images * s["smoothgrad_n"]),
        "ig": (0, n_images * (s["ig_steps"] + 1)),
        "gradcam": (0, n_images),
        # a model truncated at a mid-level layer, plus the robust mode's transforms and Adam: ~0.8 of a full pass
        "filters": (0, 0.8 * s["filter_count"] * (s["filter_steps"] + s["robust_steps"])),
        "lime": (n_images * s["lime_samples"], 0),
        "lime_classes": (2 * lime_rows * s["lime_class_samples"], 0),
        "shap": (n_images * s["shap_max_evals"], 0),
        "deepdream": (0, 0.6 * n_images * 2 * s["dream_octaves"] * s["dream_steps"]),
        "classviz": (0, 1.5 * n_classviz * s["classviz_steps"]),   # jitter and blur each step
        "occlusion": (n_images * occlusion_positions(size, s["occlusion_patch"], s["occlusion_stride"]) ** 2, 0),
        # sanity: one randomisation step per parameterised layer, each recomputing every gradient method
        # deletion/insertion of every method, the validation images' maps (LIME and SHAP on their subset) and the
        # sanity check's cascade
        "trust": (trust_images * methods * 2 * (s["deletion_steps"] + 1)
                  + ((val + mark) * fwd_per_image if val else 0)
                  + (trust_sampled + (mark_sampled if val else 0)) * (s["lime_samples"] + s["shap_max_evals"]),
                  ((val + mark) * grad_per_image if val else 0)
                  + tc["sanity"] * n_layers * (3 + s["sanity_smoothgrad_n"] + s["sanity_ig_steps"])),
    }
    return cost.get(task, (0, 0))


def occlusion_positions(size: int, patch: int, stride: int) -> int:
    """Patch positions along one side (occlusion.patch_starts: the last one flush with the border)."""
    patch = min(patch, size)
    return len(range(0, size - patch + 1, stride)) + (1 if (size - patch) % stride else 0)


def task_seconds(tasks: list[str], s: dict[str, Any], rates: dict[str, float], n_images: int, n_classes: int,
            n_eval: int, n_layers: int = 13, **shape: int | None) -> dict[str, float]:
    """Predicted seconds per task from the cost model and the probed rates (shape: passes' size, n_classviz)."""
    out = {}
    for t in tasks:
        fwd, bwd = passes(t, s, n_images, n_classes, n_eval, n_layers, **shape)
        out[t] = fwd / rates["forward"] + bwd / rates["backward"] + DRAW_SECONDS
    if "confusion" in out:  # decoding shares the same cores with the model
        out["confusion"] += n_eval * rates.get("decode_seconds", 0.0)
    return out


def plan(tasks: list[str], s: dict[str, Any], rates: dict[str, float], n_images: int, n_classes: int, n_eval: int,
         n_layers: int = 13, *, budget: float, overhead: float = 1.25, **shape: int | None
         ) -> tuple[dict[str, Any], list[str]]:
    """Scale the scalable settings by one common factor (down to their floors) until the run fits the budget."""
    def total(cfg: dict[str, Any]) -> float:
        return overhead * sum(task_seconds(tasks, cfg, rates, n_images, n_classes, n_eval, n_layers, **shape).values())

    if total(s) <= budget:
        return dict(s), []
    lo, hi = 0.0, 1.0
    for _ in range(30):  # bisection on the common factor
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(scaled(s, mid)) <= budget else (lo, mid)
    new = scaled(s, lo)
    changes = [f"{k}: {s[k]} -> {new[k]}" for k in SCALABLE if new[k] != s[k]]
    if total(new) > budget:
        changes.append(f"still predicted {total(new):.0f}s > budget {budget:.0f}s at every floor")
    return new, changes


def scaled(s: dict[str, Any], factor: float) -> dict[str, Any]:
    """Settings with every scalable count multiplied by factor, never below its floor or above its value."""
    out = dict(s)
    for k, floor in SCALABLE.items():
        out[k] = int(min(s[k], max(floor, round(s[k] * factor))))
    return out


def will_skip(ctx, task_names: list[str]) -> dict[str, str]:
    """The tasks of this run that will be skipped, and why (the run context's own skip rules)."""
    out: dict[str, str] = {}
    why = ctx.eval_problem()
    if why:
        out.update({t: why for t in ("confusion", "lime_classes") if t in task_names})
    kind = ctx.settings.get("dream_objective", "l2").partition(":")[0]
    for t, what in (("gradcam", "Grad-CAM"), ("filters", "filter visualization"), ("deepdream", "Deep Dream")):
        why = ctx.layer_problem(what)
        if why and t in task_names and not (t == "deepdream" and kind == "logit"):
            out[t] = why
    return out


def apply(ctx, task_names: list[str], seconds: float | None) -> None:
    """Probe this machine; with a budget, fit the run into it (recorded in ctx.plan), else only warn.

    Only the tasks that will run are counted (will_skip). To fit, the sample counts are scaled down as far as needed
    (forward-only passes already run in bf16 by default where the hardware computes it natively).
    """
    import sys

    import dataset
    from deep_dream import pick_classes

    if seconds is not None and seconds <= 0:
        raise UserError(f"--time-budget {seconds:g}: give a positive number of seconds")
    skipped = will_skip(ctx, task_names)
    task_names = [t for t in task_names if t not in skipped]
    rates = probe(ctx.model, ctx.device, ctx.input_size, ctx.settings, forward_model=ctx.infer_model())
    eval_dir = ctx.data / ctx.opts.eval_split
    n_eval = len(dataset.list_images(eval_dir)) if {"confusion", "lime_classes"} & set(task_names) else 0
    if n_eval:
        rates["decode_seconds"] = decode_seconds(eval_dir, ctx.input_size, ctx.cv2_mode, resize=ctx.resize)
    layers = sum(1 for m in ctx.net.modules() if any(True for _ in m.parameters(recurse=False)))
    sizes = (len(ctx.indices), ctx.num_classes, n_eval, layers)
    shape = {"size": ctx.input_size, "macs": ctx.macs()}
    if "classviz" in task_names:
        shape["n_classviz"] = len(pick_classes(ctx.num_classes, ctx.opts.classes, ctx.targets(), ctx.preds()))

    def total(cfg: dict[str, Any], r: dict[str, float]) -> float:
        return 1.25 * sum(task_seconds(task_names, cfg, r, *sizes, **shape).values())

    before = total(ctx.settings, rates)
    # the cost model's seconds per task (without the 25% margin), for bench/any_model.py to set against the measured
    ctx.cache["budget_prediction"] = task_seconds(task_names, ctx.settings, rates, *sizes, **shape)
    note = f" (skipped: {', '.join(skipped)})" if skipped else ""
    if seconds is None:
        if before > WARN_SECONDS:
            print(f"warning: this run is predicted to take about {before / 60:.0f} min on this machine{note}; "
                  f"add --time-budget 540 (hw5.sh: HW5_ARGS=\"--time-budget 540\") to fit it in 9 min",
                  file=sys.stderr)
        return
    changes = []   # bf16 is already the default where the device computes it natively (context.resolve_precision)
    new, scaled_changes = plan(task_names, ctx.settings, rates, *sizes, budget=seconds, **shape)
    changes += scaled_changes
    ctx.settings.update(new)
    for line in changes:
        print(f"time budget: {line}", file=sys.stderr)
    ctx.plan = {"seconds": seconds, "precision": ctx.precision,
                             "probe": {k: round(v, 4) for k, v in rates.items()},
                             "skipped": skipped,
                             "predicted_seconds_before": round(before, 1),
                             "predicted_seconds_after": round(total(new, rates), 1), "changes": changes}
