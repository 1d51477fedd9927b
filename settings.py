"""Fixed settings per device type (never measured at run time, so reruns draw the same bytes).

A value is either one number for every device, or a dict {"cpu": ..., "cuda": ...}. `FULL` holds the
paper-grade values that `--full` selects. `--set key=value` overrides any of them.
"""
from __future__ import annotations

import math
from typing import Any

from errors import UserError

DEFAULTS: dict[str, Any] = {
    # Batch sizes: forward-only passes (predictions, perturbation methods) and forward+backward passes.
    # Measured by bench/run.py on our 2-core CPU (channels_last): forward 68 img/s at batch 2, 61 at 4, 49 at 32;
    # forward+backward (input gradients) 32 img/s at batch 2, 28 at 4. A GPU wants large batches.
    "batch_size": {"cpu": 4, "cuda": 256},
    "grad_batch_size": {"cpu": 2, "cuda": 128},
    "eval_batch_size": {"cpu": 4, "cuda": 256},   # bench/run.py: channels_last bs 2-4 beats 32 by 1.3x
    "loader_workers": 2,
    # saliency family
    "smoothgrad_n": 50,
    "smoothgrad_sigma": 0.15,
    "ig_steps": 64,
    "ig_baseline": "black",
    # filter visualization
    "filter_count": 16,
    "filter_steps": 100,
    "filter_lr": 0.1,
    "filter_chunk": {"cpu": 2, "cuda": 64},   # bench/filter_chunks.py, quiet CPU: chunk 2 best (16 was 1.4x slower)
    # Fourier + decorrelated colour converges fast. With Adam every coefficient moves about lr per step, so lr x steps
    # sets how far the sigmoid is driven into saturation: lr 0.4 left 39% of the demo's 8-bit pixels (cnn.10, 16
    # filters) at <= 2 or >= 253 and 31% on the full-size hw3; lr 0.2 leaves 12% and 8% in the same 48 steps, with
    # 89% / 86% of lr 0.4's activation (Lucent's lr 0.05 x 192 steps: 6% / 4%, 4x the time).
    "robust_steps": 48,
    "robust_lr": 0.2,
    # LIME
    "lime_samples": 1000,
    # per-class LIME: at 300 samples the top 5 superpixels of two seeds overlap 0.81 (0.52 at 100; bench/lime_stability.py)
    "lime_class_samples": 300,
    "lime_segments": 100,
    "lime_compactness": 1.0,
    "lime_sigma": 1.0,
    "lime_batch_size": {"cpu": 4, "cuda": 256},
    # SHAP (Partition explainer): model evaluations per image, forward batch, masker ("auto": blur(k,k), k = half
    # the image side). bench/shap_vs_lime.py, the shap task against the lime task (1000 samples) on the same 4
    # images, one process, 1 thread, busy 2-core CPU: demo model 0.81x and 1.04x at 1000 evaluations (0.43-0.72x
    # at 500); full-size random hw3 0.39x at 500 (lime 941 s, shap 364 s; 1000 not timed, ~0.8x by the per-pass
    # cost). 500: 1000 fits the 1.2x too, but with the trust task's 11 SHAP maps the default demo run went past its
    # 120 s. The time planner scales it down to 200 at the least (budget.SCALABLE).
    "shap_max_evals": 500,
    "shap_batch_size": {"cpu": 4, "cuda": 256},
    "shap_masker": "auto",
    # masked images shap evaluates per round of the Partition explainer: it changes which rectangles are refined,
    # so it is part of the method, not a speed knob
    "shap_round_size": 64,
    # Deep Dream, class models, occlusion
    "dream_steps": 10,
    "dream_octaves": 3,
    "dream_octave_scale": 1.4,
    "dream_lr": 0.01,
    "dream_objective": "l2",
    "classviz_steps": 32,   # demo v2: every class at p >= 0.93 (the logit objective: Bread ends as Fried food)
    "classviz_lr": 0.15,
    "classviz_objective": "logprob",   # log-softmax of the class, or "logit" (Simonyan's S_c)
    "classviz_l2": 1e-3,
    "occlusion_patch": 24,
    "occlusion_stride": 12,
    "occlusion_value": 0.5,   # the grey of the occluding patch
    # trust metrics
    # Image counts scale with the model's multiply-adds per image (budget.trust_counts): below trust_ref_macs
    # (the demo) trust_per_class validation images per class, LIME and SHAP on trust_sampled_per_class per class,
    # sanity_images for the sanity check; above it proportionally fewer; with none, the first trust_images selected
    # images are scored. On the demo that is the 33-image protocol: 3 validation images per class (33), LIME and SHAP
    # on 1 per class at their figures' sample counts, 8 sanity images. `--trust full` adds finer curves (128 steps)
    # and the sanity check at the figures' sample counts.
    "trust_images": 4,
    "trust_per_class": 3,
    "trust_sampled_per_class": 1,
    "trust_ref_macs": 100_000_000,
    "trust_bootstrap": 2000,     # resamples of the 95% percentile bootstrap intervals (seeded)
    "deletion_steps": 16,      # ROAD's 16 equal steps: removal at 0 .. 15/16 of the pixels, insertion 0 .. 1
    "deletion_fill": "road",   # removed pixels: "road" (noisy linear imputation, Rong et al. 2022) or "black"
    "road_noise": 0.01,        # ROAD's default: noise std 0.01 of the pixel range on the imputed pixels
    "sanity_images": 8,
    "sanity_smoothgrad_n": 10,
    "sanity_ig_steps": 16,
    "insertion_blur": 0.0625,
    # whole-split audit (--task audit): low-resolution Grad-CAM and cheap deletion (audit.py)
    "audit_grid": 16,         # cells per side of the audit maps (and of the deletion order)
    "audit_steps": {"cpu": 4, "cuda": 8},   # deletion steps: steps - 1 extra forward passes per image
    "audit_border": 0.125,    # border band: cells within this fraction of the side of an edge
    "audit_clusters": 3,      # attention patterns (k-means clusters) per predicted class
    "audit_spot": 3,          # spot window (cells per side) of the suspicion score
    "audit_rescore": 64,      # second look: the Grad-CAM ranking's top images rescored with IG and a spot drop
    "audit_ig_steps": 8,      # IG steps (blurred baseline) of the second look
    "audit_top": 16,          # suspicious images shown in audit.png and the report
}

# The time planner's reference rates (budget.py), per device type: the 2-core AMD EPYC with AVX-512 BF16 (torch
# 2.14.1, 2 threads, quiet machine) on which docs/performance.md measured every default run. Fitted to those
# measurements (bench/run.py: full-size hw3 forward 57 images/s fp32 and 126 bf16, forward + input gradient 24;
# --arch hw5ta 9 images/s forward; bench/any_model.py: resnet50 and efficientnet_b0's default runs). A CPU without
# native bf16 runs fp32 by default (context.resolve_precision) and is planned at the fp32 rates.
REFERENCE_RATES: dict[str, dict[str, float]] = {
    "cpu": {
        "dense_macs_fp32": 80e9,        # multiply-adds per second of dense convolutions (oneDNN, compute-bound)
        "dense_macs_bf16": 176e9,
        "grouped_macs_fp32": 5e9,       # depthwise and grouped convolutions: memory-bound, no bf16 gain
        "grouped_macs_bf16": 5e9,
        "linear_macs_fp32": 20e9,       # small-batch matrix-vector products: bound by reading the weights
        "linear_macs_bf16": 40e9,
        "activation_bytes": 16e9,       # fp32 activation bytes read and written per second (bf16 moves half)
        "call_seconds": 20e-6,          # one module call (Python and operator dispatch), per batch
        "backward_factor": 2.5,         # forward + input gradient against one forward, same precision
        "copy_seconds": 2e-3,           # per module, each time a method copies the model (BN folding, bf16 weights)
        "lime_sample_seconds": 1.8e-3,  # LIME's own work per sample (masking, the weighted fit)
        "shap_eval_seconds": 4e-3,      # SHAP's Partition explainer per evaluation (masking, the tree)
        "decode_seconds": 4e-3,         # decoding and resizing one JPEG of about 512 x 384
        "impute_pixel_seconds": 1.2e-7,  # ROAD's imputation (road.fast) per pixel: 2 ms per 128 x 128 image
        "task_seconds": 1.5,            # a task's figures and files
        "report_seconds": 12.0,         # compare, where and report's own work beyond their figures
    },
}

FULL: dict[str, Any] = {
    "smoothgrad_n": 100,
    "ig_steps": 256,
    "filter_count": 64,
    "filter_steps": 200,
    "robust_steps": 192,
    "lime_samples": 2000,
    "lime_class_samples": 1000,
    "shap_max_evals": 2000,
    "dream_steps": 20,
    "classviz_steps": 128,
    "occlusion_stride": 4,
    "trust_images": 22,
    "trust_per_class": 3,
    "trust_sampled_per_class": 1,
    "deletion_steps": 128,
    "sanity_images": 8,
    "sanity_smoothgrad_n": 50,
    "sanity_ig_steps": 64,
}


# The trust metrics' own keys: `--trust full` takes FULL's values for these alone.
TRUST_KEYS = ("trust_images", "trust_per_class", "trust_sampled_per_class", "trust_ref_macs", "trust_bootstrap",
              "deletion_steps", "deletion_fill", "road_noise", "sanity_images", "sanity_smoothgrad_n",
              "sanity_ig_steps", "insertion_blur")


def resolve(device_type: str, full: bool = False, overrides: list[str] | None = None,
            trust_full: bool = False) -> dict[str, Any]:
    """Settings for a device type ('cpu' or 'cuda'), with --full (or --trust full's keys) and --set key=value applied."""
    dev = "cuda" if device_type == "cuda" else "cpu"
    out = {k: (v[dev] if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    if full or trust_full:
        out.update({k: (v[dev] if isinstance(v, dict) else v) for k, v in FULL.items() if full or k in TRUST_KEYS})
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in out:
            raise UserError(f"--set {item!r}: expected key=value with key one of: {', '.join(sorted(out))}")
        old = out[key]
        try:
            out[key] = type(old)(raw) if not isinstance(old, bool) else raw.lower() in ("1", "true", "yes")
        except ValueError:
            raise UserError(f"--set {item!r}: {raw!r} is not a {type(old).__name__}") from None
        low = _lowest(key, old)
        if low is not None and not (math.isfinite(out[key]) and out[key] >= low):
            raise UserError(f"--set {item!r}: {key} must be a finite number >= {low:g}")
    return out


# Counts that may be 0: decoding in this process; no validation images (or none sampled) in the trust metrics.
# The rest of the integer settings are sizes, steps and counts: at least 1.
ZERO_OK = ("loader_workers", "trust_per_class", "trust_sampled_per_class")


def _lowest(key: str, value: Any) -> float | None:
    """The smallest value a numeric setting accepts: 1 for batch sizes, steps and counts, else 0; None for text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return 1 if isinstance(value, int) and key not in ZERO_OK else 0


def parse_ids(spec: str, flag: str, count: int, owner: str) -> list[int]:
    """'0-3,7' -> ids in the order given, without repeats; a malformed or out-of-range id is a UserError naming the
    flag and what `owner` ("the model has 11 classes") accepts."""
    ranges: list[tuple[int, int]] = []
    try:
        for part in spec.replace(" ", "").split(","):
            if part:
                lo, sep, hi = part.partition("-")
                ranges.append((int(lo), int(hi) if sep else int(lo)))
    except ValueError:
        raise UserError(f"{flag} {spec!r}: use ids and ranges like 0-3,7") from None
    backwards = [(lo, hi) for lo, hi in ranges if hi < lo]
    if backwards:
        lo, hi = backwards[0]
        raise UserError(f"{flag} {spec!r}: the range {lo}-{hi} runs backwards; write it low-high, e.g. {hi}-{lo}")
    ids = [i for lo, hi in ranges for i in range(lo, hi + 1)]
    bad = [i for i in ids if not 0 <= i < count]
    if not ids or bad:
        raise UserError(f"{flag} {spec!r}: {owner} (0..{count - 1})")
    return list(dict.fromkeys(ids))
