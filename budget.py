"""Time planning: a cost model of each task, priced from the model's own counts at the reference CPU's rates.

Every run of the default task list is planned to DEFAULT_SECONDS on the reference CPU, margin included, and
`--time-budget S` plans any run to S seconds. The plan never reads a clock: its inputs are the model's counted
multiply-adds, activation bytes and module calls (model.model_cost), the settings, and the device type's reference
rates (settings.REFERENCE_RATES), so two machines of the same device type and precision compute the same settings
and draw the same bytes. A run that fits keeps its settings; a heavier one has its sample counts scaled down by one
common factor, each change printed and recorded in run.json ('budget'). `--time-budget none` keeps the settings
whatever they cost. `--probe-budget` prices the passes from a throughput probe of this machine instead, so its
settings, and the figures, depend on the machine.
"""
from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import nn

import explain
import metrics
import settings as settings_mod
import dataset
import trust
import where
from deep_dream import CLASSVIZ_MAX, pick_classes
from model import MAC_KINDS, model_cost

DEFAULT_SECONDS = 480.0
MARGIN = 1.25   # the plan fits the budget with this factor on the cost model's seconds
REFERENCE = "the reference 2-core CPU"
# Settings the planner may scale down, with the floor below which an explanation stops being worth drawing.
SCALABLE = {"lime_samples": 100, "lime_class_samples": 30, "shap_max_evals": 200, "smoothgrad_n": 4, "ig_steps": 8,
            "deletion_steps": 8, "filter_count": 4, "filter_steps": 20, "robust_steps": 16, "classviz_steps": 12,
            "dream_steps": 3, "trust_images": 1, "sanity_smoothgrad_n": 2, "sanity_ig_steps": 4, "trust_ref_macs": 1}
# Tasks whose gradient passes run in bf16 under bf16 precision: SmoothGrad (explain.BF16_GRADIENTS) and the
# optimised pictures (context.infer_model)
BF16_GRADIENT_TASKS = ("smoothgrad", "filters", "deepdream", "classviz")
# Model copies a task makes (BN folding, bf16 weights): one per gradient or bf16 method call
COPIES = {"saliency": 1, "smoothgrad": 1, "ig": 1, "occlusion": 1, "lime": 1, "shap": 1, "where": 1}


def image_seconds(cost: dict[str, int], ref: dict[str, float], precision: str, batch: int) -> float:
    """Seconds of one image's forward pass at a precision and batch size, from the model's counts."""
    macs = sum(cost[k] / ref[f"{k}_{precision}"] for k in ("dense_macs", "grouped_macs", "linear_macs"))
    moved = cost["activation_bytes"] * (0.5 if precision == "bf16" else 1.0) / ref["activation_bytes"]
    return macs + moved + cost["calls"] * ref["call_seconds"] / batch


def model_rates(cost: dict[str, int], ref: dict[str, float], precision: str, s: dict[str, Any]) -> dict[str, float]:
    """Images per second of forward passes (at the run's precision), fp32 and bf16 forward+input-gradient passes, and
    the per-call overheads, all from the reference rates."""
    grad = ref["backward_factor"]
    return overheads(cost, ref) | {
        "forward": 1.0 / image_seconds(cost, ref, precision, s["batch_size"]),
        "backward": 1.0 / (grad * image_seconds(cost, ref, "fp32", s["grad_batch_size"])),
        "backward_bf16": 1.0 / (grad * image_seconds(cost, ref, precision, s["grad_batch_size"]))}


def overheads(cost: dict[str, int], ref: dict[str, float]) -> dict[str, float]:
    """The per-call and per-sample seconds of the cost model (the same for the probe: no probe sees them)."""
    keys = ("lime_sample_seconds", "shap_eval_seconds", "decode_seconds", "task_seconds", "report_seconds")
    return {k: ref[k] for k in keys} | {"copy_seconds": ref["copy_seconds"] * cost["calls"]}


def rate(model: nn.Module, device: torch.device, size: int, batch: int, grad: bool, seconds: float = 0.5) -> float:
    """Measured images per second of forward passes (or forward + input-gradient passes) at one batch size."""
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
    """Measured images per second for forward passes (at batch_size; through forward_model when given, e.g. bf16)
    and forward+backward passes (at grad_batch_size): --probe-budget's machine-dependent rates."""
    return {"forward": rate(forward_model or model, device, size, s["batch_size"], False, seconds / 2),
            "backward": rate(model, device, size, s["grad_batch_size"], True, seconds / 2)}


def passes(task: str, s: dict[str, Any], n_images: int, n_classes: int, n_eval: int, n_layers: int = 13, *,
           size: int = 128, n_classviz: int | None = None, macs: int | None = None, stamped: bool = False
           ) -> tuple[float, float]:
    """(forward images, forward+backward images) a task costs under settings s (full-model equivalents).

    n_classes bounds what the class tasks draw: lime_classes explains every class up to confusion.MAX_GRID, else
    confusion.LIME_CLASS_ROWS; classviz draws n_classviz classes (default: up to deep_dream's CLASSVIZ_MAX). The
    sanity check recomputes the gradient methods once before and once per stop of its cascade
    (metrics.cascade_stops of the n_layers parameterised layers). Trust scores three curves per (image, map): MoRF,
    LeRF and insertion, and a second seed of LIME, SHAP and SmoothGrad on the figures' images (stability).
    `stamped`: the data has a planted stamp, so `where` draws LIME and Grad-CAM of its two shortcut images.
    """
    lime_rows = lime_class_rows(n_classes)
    n_classviz = min(n_classes, CLASSVIZ_MAX) if n_classviz is None else n_classviz
    methods = len(explain.method_names()) + 1  # maps scored by the trust task, the random baseline included
    tc = trust_counts(s, macs)
    val, val_sampled = n_classes * tc["per_class"], n_classes * tc["sampled_per_class"]
    # the marked images of the shortcut score: up to per_class of the shortcut class, sampled_per_class of the others
    # (LIME and SHAP: one of the shortcut class, one other)
    mark, mark_sampled = tc["per_class"] + (n_classes - 1) * tc["sampled_per_class"], 2 * (tc["sampled_per_class"] > 0)
    trust_images = val if val else min(n_images, s["trust_images"])
    trust_sampled = val_sampled if val else 0        # the selected images' LIME / SHAP maps are the figures' own
    grad_per_image = 1 + s["smoothgrad_n"] + s["ig_steps"] + 1 + 1     # vanilla, SmoothGrad, IG, Grad-CAM
    fwd_per_image = occlusion_positions(size, s["occlusion_patch"], s["occlusion_stride"]) ** 2
    recomputations = 1 + len(metrics.cascade_stops(n_layers))
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
        "occlusion": (n_images * fwd_per_image, 0),
        # deletion/insertion of every method, the validation images' maps (LIME and SHAP on their subset) and the
        # sanity check's cascade
        "trust": (trust_images * methods * 3 * (s["deletion_steps"] + 1)
                  + ((val + mark) * fwd_per_image if val else 0)
                  + (trust_sampled + (mark_sampled if val else 0) + n_images) * (s["lime_samples"] + s["shap_max_evals"]),
                  ((val + mark) * grad_per_image if val else 0) + n_images * s["smoothgrad_n"]
                  + tc["sanity"] * recomputations * (3 + s["sanity_smoothgrad_n"] + s["sanity_ig_steps"])),
        "where": (2 * s["lime_samples"] if stamped else 0, 2 if stamped else 0),
    }
    return cost.get(task, (0, 0))


def trust_counts(s: dict[str, Any], macs: int | None) -> dict[str, int]:
    """The trust task's image counts (trust.trust_counts; the selected images only when the model's cost is unknown)."""
    tc = trust.trust_counts(macs, s)
    return tc if macs is not None else tc | {"per_class": 0, "sampled_per_class": 0}


def lime_class_rows(n_classes: int) -> int:
    """Classes the per-class LIME explains: every class up to confusion.MAX_GRID, else LIME_CLASS_ROWS."""
    from confusion import LIME_CLASS_ROWS, MAX_GRID

    return n_classes if n_classes <= MAX_GRID else LIME_CLASS_ROWS


def extra_seconds(task: str, s: dict[str, Any], rates: dict[str, float], n_images: int, n_classes: int, n_eval: int,
                  n_layers: int, macs: int | None, size: int = 128, stamped: bool = False) -> float:
    """A task's seconds beyond its model passes: figures, model copies, LIME's and SHAP's own work, decoding, and
    the trust task's ROAD imputations (MoRF and LeRF, every step but the first, of every scored map)."""
    tc = trust_counts(s, macs)
    val = n_classes * tc["per_class"]
    scored = (val if val else min(n_images, s["trust_images"])) * (len(explain.method_names()) + 1)
    road = scored * 2 * s["deletion_steps"] * size * size * rates.get("impute_pixel_seconds", 0.0) \
        if s.get("deletion_fill", "road") == "road" else 0.0
    lime, shap = rates.get("lime_sample_seconds", 0.0), rates.get("shap_eval_seconds", 0.0)
    sampled = n_classes * tc["sampled_per_class"] + 2 * (tc["sampled_per_class"] > 0)
    copies = COPIES.get(task, 0)
    if task == "trust":   # a bf16 copy per scored method, and each gradient method's copy at every cascade stop
        copies = len(explain.method_names()) + 3 * (1 + len(metrics.cascade_stops(n_layers)))
    own = {"confusion": n_eval * rates.get("decode_seconds", 0.0),
           "lime": n_images * s["lime_samples"] * lime,
           "lime_classes": 2 * lime_class_rows(n_classes) * s["lime_class_samples"] * lime,
           "shap": n_images * s["shap_max_evals"] * shap,
           "trust": (sampled + n_images) * (s["lime_samples"] * lime + s["shap_max_evals"] * shap) + road,
           "where": 2 * s["lime_samples"] * lime if stamped else 0.0,
           "report": rates.get("report_seconds", 0.0)}
    return own.get(task, 0.0) + copies * rates.get("copy_seconds", 0.0) + rates.get("task_seconds", 0.0)


def occlusion_positions(size: int, patch: int, stride: int) -> int:
    """Patch positions along one side (occlusion.patch_starts: the last one flush with the border)."""
    patch = min(patch, size)
    return len(range(0, size - patch + 1, stride)) + (1 if (size - patch) % stride else 0)


def task_seconds(tasks: list[str], s: dict[str, Any], rates: dict[str, float], n_images: int, n_classes: int,
                 n_eval: int, n_layers: int = 13, **shape: int | None) -> dict[str, float]:
    """Predicted seconds per task from the cost model and the rates (shape: passes' size, n_classviz, macs)."""
    out = {}
    for t in tasks:
        fwd, bwd = passes(t, s, n_images, n_classes, n_eval, n_layers, **shape)
        bf16 = bf16_backward(t, bwd, s, n_images, n_classes, n_layers, shape.get("macs")) \
            if "backward_bf16" in rates else 0.0
        out[t] = (fwd / rates["forward"] + (bwd - bf16) / rates["backward"] + bf16 / rates.get("backward_bf16", 1.0)
                  + extra_seconds(t, s, rates, n_images, n_classes, n_eval, n_layers, shape.get("macs"),
                                  shape.get("size") or 128, bool(shape.get("stamped"))))
    return out


def bf16_backward(task: str, bwd: float, s: dict[str, Any], n_images: int, n_classes: int, n_layers: int,
                  macs: int | None) -> float:
    """Of a task's bwd forward+backward images, those that run in bf16 (BF16_GRADIENT_TASKS, and the trust task's
    SmoothGrad maps)."""
    if task in BF16_GRADIENT_TASKS:
        return bwd
    if task != "trust":
        return 0.0
    tc = trust_counts(s, macs)
    marked = tc["per_class"] + (n_classes - 1) * tc["sampled_per_class"]
    val = n_classes * tc["per_class"] + (marked if tc["per_class"] else 0)
    recomputations = 1 + len(metrics.cascade_stops(n_layers))
    return (val + n_images) * s["smoothgrad_n"] + tc["sanity"] * recomputations * s["sanity_smoothgrad_n"]


def total_seconds(tasks: list[str], s: dict[str, Any], rates: dict[str, float], *sizes: int,
                  **shape: int | None) -> float:
    """The whole run's predicted seconds, margin included."""
    return MARGIN * sum(task_seconds(tasks, s, rates, *sizes, **shape).values())


def plan(tasks: list[str], s: dict[str, Any], rates: dict[str, float], n_images: int, n_classes: int, n_eval: int,
         n_layers: int = 13, *, budget: float, **shape: int | None) -> tuple[dict[str, Any], list[str]]:
    """Scale the scalable settings by one common factor (down to their floors) until the run fits the budget."""
    sizes = (n_images, n_classes, n_eval, n_layers)
    if total_seconds(tasks, s, rates, *sizes, **shape) <= budget:
        return dict(s), []
    lo, hi = 0.0, 1.0
    for _ in range(30):  # bisection on the common factor
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total_seconds(tasks, scaled(s, mid), rates, *sizes, **shape) <= budget else (lo, mid)
    new = scaled(s, lo)
    changes = [f"{k}: {s[k]} -> {new[k]}" for k in SCALABLE if new[k] != s[k]]
    after = total_seconds(tasks, new, rates, *sizes, **shape)
    if after > budget:
        changes.append(f"still predicted {after:.0f}s > budget {budget:.0f}s at every floor")
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


def run_rates(ctx, cost: dict[str, int], probed: bool) -> dict[str, float] | None:
    """The rates the plan prices passes at: the device type's reference rates, or this machine's probe; None when
    the device type has no reference rates."""
    ref = settings_mod.REFERENCE_RATES.get(ctx.device.type)
    if not probed:
        return model_rates(cost, ref, ctx.precision, ctx.settings) if ref else None
    measured = probe(ctx.model, ctx.device, ctx.input_size, ctx.settings, forward_model=ctx.infer_model())
    return overheads(cost, ref or settings_mod.REFERENCE_RATES["cpu"]) | measured


def apply(ctx, task_names: list[str], seconds: float | str | None, probed: bool = False) -> None:
    """Plan the run to `seconds` (None: DEFAULT_SECONDS, "none": keep the settings), recorded in ctx.plan.

    Only the tasks that will run are counted (will_skip). To fit, the sample counts are scaled down as far as needed.
    """
    budget = DEFAULT_SECONDS if seconds is None else None if seconds == "none" else float(seconds)
    skipped = will_skip(ctx, task_names)
    task_names = [t for t in task_names if t not in skipped]
    cost = model_cost(ctx.net, ctx.input_size, ctx.device)
    rates = run_rates(ctx, cost, probed)
    mode = "probe" if probed else "model"
    if rates is None:
        print(f"time budget: no reference rates for {ctx.device.type}: the settings are not planned", file=sys.stderr)
        ctx.plan = {"seconds": budget, "mode": "unplanned", "device": ctx.device.type, "changes": []}
        return
    n_eval = len(dataset.list_images(ctx.data / ctx.opts.eval_split)) \
        if {"confusion", "lime_classes"} & set(task_names) else 0
    layers = sum(1 for m in ctx.net.modules() if any(True for _ in m.parameters(recurse=False)))
    sizes = (len(ctx.indices), ctx.num_classes, n_eval, layers)
    shape = {"size": ctx.input_size, "macs": sum(cost[k] for k in MAC_KINDS),
             "stamped": where.stamp_class(ctx.data, ctx.class_names) is not None
             and dataset.mark_dir(ctx.data, ctx.opts.eval_split) is not None}
    if "classviz" in task_names:
        shape["n_classviz"] = len(pick_classes(ctx.num_classes, ctx.opts.classes, ctx.targets(), ctx.preds()))
    before = total_seconds(task_names, ctx.settings, rates, *sizes, **shape)
    new, changes = (dict(ctx.settings), []) if budget is None else \
        plan(task_names, ctx.settings, rates, *sizes, budget=budget, **shape)
    if changes:
        place = "on this machine (probe)" if probed else f"on {REFERENCE}"
        note = f" (skipped: {', '.join(skipped)})" if skipped else ""
        print(f"time budget: predicted {before:.0f}s {place} > {budget:.0f}s{note}; scaled "
              f"(--time-budget none keeps the defaults):", file=sys.stderr)
        for line in changes:
            print(f"time budget: {line}", file=sys.stderr)
    ctx.settings.update(new)
    # the cost model's seconds per task of the planned settings (without the margin), for the benchmarks' ratios
    ctx.cache["budget_prediction"] = task_seconds(task_names, ctx.settings, rates, *sizes, **shape)
    ctx.plan = {"seconds": budget, "mode": mode if budget is not None else "none", "precision": ctx.precision,
                "predicted_seconds_before": round(before, 1),
                "predicted_seconds_after": round(total_seconds(task_names, new, rates, *sizes, **shape), 1),
                "changes": changes, "skipped": skipped, "cost": cost,
                "rates": {k: round(v, 6) for k, v in rates.items()}}
