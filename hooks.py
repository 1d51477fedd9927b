"""Capturing a layer's output during a forward pass, with hooks always released (also on error)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


class _Stop(Exception):
    """Raised inside a hook to end a forward pass early (the model truncated after the layer)."""


class Tap:
    """Context manager that records `module`'s output of its last call in `self.output`.

    With stop=True the forward pass ends right after the module, so only the layers up to it run:
    use `tap.run(model, x)`, which returns the captured activation.
    """

    def __init__(self, module: nn.Module, stop: bool = False):
        self.module, self.stop = module, stop
        self.output: torch.Tensor | None = None

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.output = output
        if self.stop:
            raise _Stop

    def __enter__(self) -> "Tap":
        self._hooked = forward_hook(self.module, self._hook)
        self._hooked.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooked.__exit__(*exc)

    def run(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Forward x through model and return the captured activation (truncated when stop=True)."""
        self.output = None
        try:
            model(x)
        except _Stop:
            pass
        if self.output is None:
            raise RuntimeError("the tapped layer did not run in the forward pass")
        return self.output


@contextmanager
def forward_hook(module: nn.Module, fn: Callable) -> Iterator[None]:
    """Register `fn` as a forward hook of `module` for the block; removed on exit, also on error."""
    handle = module.register_forward_hook(fn)
    try:
        yield
    finally:
        handle.remove()
