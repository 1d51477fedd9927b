"""The task registry: name -> Task(module, function, needs). A task function takes the run context and returns its
typed record (records.py) holding the files it wrote. Modules are imported only when their task runs.

`needs` names the attribution methods a task reads from the run (`ctx.attribution(method)`): maps stay in memory,
and a task run alone computes what it needs. "*" means every registered method.
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
    needs: tuple[str, ...] = ()
    default: bool = True          # in the default run


# In run order.
REGISTRY: dict[str, Task] = {
    "confusion": Task("confusion", "task_confusion"),
    "saliency": Task("saliency", "task_saliency", ("vanilla",)),
    "smoothgrad": Task("saliency", "task_smoothgrad", ("smoothgrad",)),
    "ig": Task("saliency", "task_ig", ("integrated_gradients",)),
    "gradcam": Task("saliency", "task_gradcam", ("gradcam",)),
    "filters": Task("filter_vis", "task_filters"),
    "lime": Task("lime_explain", "task_lime", ("lime",)),
    "shap": Task("shap_explain", "task_shap", ("shap",)),
    "lime_classes": Task("lime_explain", "task_lime_classes"),
    "deepdream": Task("deep_dream", "task_deepdream"),
    "classviz": Task("deep_dream", "task_classviz"),
    "occlusion": Task("occlusion", "task_occlusion", ("occlusion",)),
    "compare": Task("saliency", "task_compare", ("*",)),
    "trust": Task("metrics", "task_trust", ("*",)),
    "where": Task("where", "task_where", ("*",)),      # Q1: mass on object / mark / background per method
    "audit": Task("audit", "task_audit", default=False),   # whole-split work: only when asked for
    "report": Task("report.build", "task_report"),
}
# Whole-split work that runs only when asked for (--task audit): never in the default list.
OPT_IN = ("audit",)
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
