"""Fixed settings per device type (never measured at run time, so reruns draw the same bytes).

A value is either one number for every device, or a dict {"cpu": ..., "cuda": ...}. `FULL` holds the
paper-grade values that `--full` selects. `--set key=value` overrides any of them.
"""
from __future__ import annotations

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
    "lime_class_samples": {"cpu": 100, "cuda": 300},   # up to 22 explanations: 300 each cost 48 s on CPU
    "lime_segments": 100,
    "lime_compactness": 1.0,
    "lime_sigma": 1.0,
    "lime_batch_size": {"cpu": 4, "cuda": 256},
    # Deep Dream, class models, occlusion
    "dream_steps": 10,
    "dream_octaves": 3,
    "dream_octave_scale": 1.4,
    "dream_lr": 0.01,
    "dream_objective": "l2",
    "classviz_steps": 24,   # every demo class reaches p >= 0.99 by 20 steps
    "classviz_lr": 0.05,
    "classviz_l2": 1e-3,
    "occlusion_patch": 24,
    "occlusion_stride": 12,
    # trust metrics
    "trust_images": 4,
    "deletion_steps": {"cpu": 32, "cuda": 64},   # 1/32 of the pixels per step on CPU: 28 s instead of 56 s
    "sanity_images": 1,
    "sanity_smoothgrad_n": 10,
    "sanity_ig_steps": 16,
    "insertion_blur": 0.0625,
}

FULL: dict[str, Any] = {
    "smoothgrad_n": 100,
    "ig_steps": 256,
    "filter_count": 64,
    "filter_steps": 200,
    "robust_steps": 192,
    "lime_samples": 2000,
    "lime_class_samples": 1000,
    "dream_steps": 20,
    "classviz_steps": 128,
    "occlusion_stride": 4,
    "trust_images": 22,
    "deletion_steps": 128,
    "sanity_images": 4,
    "sanity_smoothgrad_n": 50,
    "sanity_ig_steps": 64,
}


def resolve(device_type: str, full: bool = False, overrides: list[str] | None = None) -> dict[str, Any]:
    """Settings for a device type ('cpu' or 'cuda'), with --full and --set key=value applied."""
    dev = "cuda" if device_type == "cuda" else "cpu"
    out = {k: (v[dev] if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    if full:
        out.update({k: (v[dev] if isinstance(v, dict) else v) for k, v in FULL.items()})
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in out:
            raise UserError(f"--set {item!r}: expected key=value with key one of: {', '.join(sorted(out))}")
        old = out[key]
        try:
            out[key] = type(old)(raw) if not isinstance(old, bool) else raw.lower() in ("1", "true", "yes")
        except ValueError:
            raise UserError(f"--set {item!r}: {raw!r} is not a {type(old).__name__}") from None
    return out
