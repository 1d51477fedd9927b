"""Capturing a layer's output during a forward pass, with hooks always released (also on error)."""
from __future__ import annotations

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
        self._handle = None

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.output = output
        if self.stop:
            raise _Stop

    def __enter__(self) -> "Tap":
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

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
