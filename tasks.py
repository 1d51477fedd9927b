"""The task registry: name -> Task(module, function). A task function takes the run context and returns its typed
record (records.py) holding the files it wrote. Modules are imported only when their task runs.

A task gets attribution maps through the run context (`ctx.attribute(method)`): they are computed on first use and
kept in memory, so a task run alone computes what it reads and nothing else.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Task:
    """One registered task."""

    module: str
    function: str
    default: bool = True          # in the default run


# In run order.
REGISTRY: dict[str, Task] = {
    "confusion": Task("confusion", "task_confusion"),
    "saliency": Task("saliency", "task_saliency"),
    "smoothgrad": Task("saliency", "task_smoothgrad"),
    "ig": Task("saliency", "task_ig"),
    "gradcam": Task("saliency", "task_gradcam"),
    "filters": Task("filter_vis", "task_filters"),
    "lime": Task("lime_explain", "task_lime"),
    "shap": Task("shap_explain", "task_shap"),
    "lime_classes": Task("lime_explain", "task_lime_classes"),
    "deepdream": Task("deep_dream", "task_deepdream"),
    "classviz": Task("deep_dream", "task_classviz"),
    "occlusion": Task("occlusion", "task_occlusion"),
    "compare": Task("saliency", "task_compare"),
    "trust": Task("trust", "task_trust"),
    "where": Task("where", "task_where"),      # Q1: mass on object / mark / background per method
    "audit": Task("audit", "task_audit", default=False),   # whole-split work: only when asked for (--task audit)
    "report": Task("report.build", "task_report"),
}
# `train` is not a context task: main.py runs it before building the context (it makes the checkpoint).
SPECIAL = ("train",)


def names() -> list[str]:
    """Every task name, in run order."""
    return list(REGISTRY) + list(SPECIAL)


def default_tasks() -> list[str]:
    """What `python main.py` runs with no --task: every default task, in order (never train)."""
    return [n for n, t in REGISTRY.items() if t.default]


def get(name: str) -> Callable:
    """The task function of a registered name."""
    t = REGISTRY[name]
    return getattr(importlib.import_module(t.module), t.function)
