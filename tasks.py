"""The task registry: name -> (module, function). A task function takes the run context and returns the
list of files it wrote. Modules are imported only when their task runs, so a run pays only for what it uses.
"""
from __future__ import annotations

import importlib
from typing import Callable

# In run order: later tasks reuse what earlier ones cached or wrote (predictions, arrays/*.npz).
REGISTRY: dict[str, tuple[str, str]] = {
    "confusion": ("confusion", "task_confusion"),
    "saliency": ("saliency", "task_saliency"),
    "smoothgrad": ("saliency", "task_smoothgrad"),
    "ig": ("saliency", "task_ig"),
    "gradcam": ("saliency", "task_gradcam"),
    "filters": ("filter_vis", "task_filters"),
    "lime": ("lime_explain", "task_lime"),
    "lime_classes": ("lime_explain", "task_lime_classes"),
    "deepdream": ("deep_dream", "task_deepdream"),
    "classviz": ("deep_dream", "task_classviz"),
    "occlusion": ("occlusion", "task_occlusion"),
    "compare": ("saliency", "task_compare"),
    "trust": ("metrics", "task_trust"),
    "audit": ("audit", "task_audit"),
    "report": ("report.build", "task_report"),
}
# Whole-split work that runs only when asked for (--task audit): never in the default list.
OPT_IN = ("audit",)
# `train` is not a context task: main.py runs it before building the context (it makes the checkpoint).
SPECIAL = ("train",)


def names() -> list[str]:
    """Every task name, in run order."""
    return list(REGISTRY) + list(SPECIAL)


def default_tasks() -> list[str]:
    """What `python main.py` runs with no --task: every registered task but the opt-in ones, in order (never train)."""
    return [n for n in REGISTRY if n not in OPT_IN]


def get(name: str) -> Callable:
    """The task function of a registered name."""
    module, func = REGISTRY[name]
    return getattr(importlib.import_module(module), func)
