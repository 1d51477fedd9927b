"""The bottom floor of the attribution methods: the result record, a method's description, the registry, and the
progress stand-in. Compute modules, methods.py and the facade (explain.py) all import from here."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

import settings


@dataclass
class Attribution:
    """One method's maps for a batch of images, with the method's own extras."""

    method: str
    maps: np.ndarray                       # N x H x W float32, raw values (sign kept where the method has one)
    targets: np.ndarray                    # N int64: the class each map explains
    options: dict[str, Any] = field(default_factory=dict)   # the options used, defaults filled in
    gaps: np.ndarray | None = None         # integrated_gradients: |sum attr - (F(x) - F(x'))| / |F(x) - F(x')|
    sigma: float | None = None             # smoothgrad / noise tunnel: noise std as a fraction of each image's range
    layer: str | None = None               # gradcam: the layer's module name
    segments: np.ndarray | None = None     # lime, shap: N x H x W int32 superpixel ids
    local_fit: np.ndarray | None = None    # lime: R^2 of the explained class's local linear fit
    base_values: np.ndarray | None = None  # shap: f(fully masked image) for the explained class
    explanations: list | None = None       # lime: lime's ImageExplanation objects (for drawing)


MethodFn = Callable[..., Attribution]


@dataclass(frozen=True)
class Method:
    """A registered attribution method. Its option defaults are the pipeline's settings (settings.py) named in
    `settings`, plus `fixed` for options that have no setting."""

    name: str
    title: str
    fn: MethodFn
    forward_only: bool                     # True: runs forward passes only (bf16-eligible), scores probabilities
    settings: dict[str, str] = field(default_factory=dict)   # option -> key of the pipeline's settings
    sanity: dict[str, str] = field(default_factory=dict)     # option -> settings key used by the sanity check
    signed: bool = False                   # maps carry a sign (evidence for / against)
    batch_setting: str | None = None       # settings key of its batch size (default: batch_size / grad_batch_size)
    hooks: bool = False                    # reads a layer of the network through hooks (runs on the model as given)
    fixed: dict[str, Any] = field(default_factory=dict)      # options without a setting, with their defaults

    @property
    def batch_key(self) -> str:
        """The settings key of this method's batch size in the pipeline."""
        return self.batch_setting or ("batch_size" if self.forward_only else "grad_batch_size")

    @property
    def defaults(self) -> dict[str, Any]:
        """Every option with its default (the CPU settings; a caller may pass any of them)."""
        cpu = settings.resolve("cpu")
        return {opt: cpu[key] for opt, key in self.settings.items()} | self.fixed


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (the pipeline and every trust metric pick it up)."""
    METHODS[method.name] = method
    return method


class NoBar:
    """A progress bar that shows nothing."""

    def reset(self, total: int | None = None) -> None:
        """Nothing to reset."""

    def update(self, n: int = 1) -> None:
        """Nothing to show."""


@contextmanager
def progress_bar(label: str | None) -> Iterator[Any]:
    """One tqdm bar labelled `label` (methods set its total), or a silent stand-in."""
    if label is None:
        yield NoBar()
        return
    from tqdm import tqdm

    with tqdm(desc=label, unit="pass", leave=False, disable=None) as bar:
        yield bar
