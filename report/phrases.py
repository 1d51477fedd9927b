"""Small text helpers for the report's sentences: numbers, method and class names, lists."""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np


METHOD_NAMES = {
    "vanilla": "Vanilla gradient", "smoothgrad": "SmoothGrad", "integrated_gradients": "Integrated Gradients",
    "gradcam": "Grad-CAM", "lime": "LIME", "occlusion": "Occlusion", "shap": "SHAP", "random": "Random map",
}
METRIC_NAMES = {
    "deletion_auc": "deletion AUC", "insertion_auc": "insertion AUC", "pointing_game": "pointing game",
    "mass_in_mask": "mass in mask", "mass_in_mask_ratio": "mass / mask share", "sanity_spearman": "sanity Spearman",
}


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a sentence ('-' when missing)."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def method_name(key: str) -> str:
    """Display name of a method key (`gradcam` -> Grad-CAM)."""
    return METHOD_NAMES.get(key, key.replace("_", " "))


def join_names(items: list[str], limit: int = 4) -> str:
    """'A', 'A and B', 'A, B and C', or 'A, B, C, D and 2 more'."""
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def natural_key(text: str) -> list:
    """Sort key that orders cnn.6 before cnn.19."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def class_name(names: list[str], c: int) -> str:
    """Class name of an id ('?' for unknown)."""
    return names[c] if 0 <= c < len(names) else ("?" if c < 0 else f"class {c}")


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of nested task results as (dotted key, value text)."""
    if not prefix and not isinstance(obj, dict):
        return []
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in flatten(v, f"{prefix}{k}.")]
    if isinstance(obj, float):
        return [(prefix[:-1], fmt(obj, 4))]
    if isinstance(obj, (int, str, bool)) or obj is None:
        return [(prefix[:-1], str(obj))]
    if isinstance(obj, list) and len(obj) <= 8 and all(isinstance(x, (int, float, str)) for x in obj):
        return [(prefix[:-1], ", ".join(fmt(x, 4) if isinstance(x, float) else str(x) for x in obj))]
    return []


def mean_of(xs: Any) -> float | None:
    """Mean of a list of numbers (None when empty or not numbers)."""
    try:
        arr = np.asarray(xs, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 1:
        return None
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else None
