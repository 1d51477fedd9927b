"""The fastest exact fp32 path: BatchNorm folded into the preceding convolution, module names kept.

`fast_fp32(model)` returns an eval-mode deep copy in which every BatchNorm that directly follows a
convolution (and is that convolution's only consumer) is folded into the convolution's weight and bias and
replaced by nn.Identity, in channels_last memory. The copy computes the same function as the eager model
(logits equal to ~1e-5 relative; maps r >= 0.9999, tests/test_fastpath.py) and keeps every module name, so
forward hooks on the user's layers (Grad-CAM's `cnn.18`, the filters' ReLUs) work unchanged. A hook on a
folded BatchNorm sees the same tensor as before (the Identity passes the folded conv's output, which equals
the BN's); a hook on the folded convolution itself sees its output after the BN, so name such layers in
`keep` and they stay unfolded.

Chosen by measurement (bench/fastpath.py, full-size hw3, fp32, 1 thread, CPU clock on the shared 2-core AMD
EPYC with AVX-512, torch 2.14.1, 2026-12-01; median of 5 interleaved rounds, images/s at batch 2 / 4):

| path | forward | forward + input gradient | one-time |
|---|---|---|---|
| eager NCHW | 26.0 / 22.1 | 12.3 / 11.9 | - |
| eager channels_last (the pipeline until now) | 34.3 / 33.1 | 14.7 / 13.7 | - |
| BN folded, NCHW | 26.1 / 23.4 | 14.0 / 12.6 | ~0.1 s |
| BN folded, channels_last, weights frozen (`fast_fp32`) | 34.6 / 36.8 | 16.0 / 13.9 | ~0.1 s |
| BN folded, channels_last, weights trainable | 33.5 / 36.0 | 15.2 / 15.5 | ~0.1 s |
| folded + frozen TorchScript | 34.8 / 39.3 | forward only | ~2 s |
| folded + frozen TorchScript + optimize_for_inference | 39.8 / 41.6 | forward only | ~0.5-1 s |
| folded + torch.compile (a 3-round run) | 36.4 / 41.9 | 7.2 / 7.7 | 54 s + 54 s |

So fp32 is compute-bound in oneDNN's convolutions (85% of a forward+backward in the profiler, the same kernels
for every path): folding removes the BatchNorm passes for 1.02-1.11x forward and 1.02-1.13x with gradients
against channels_last eager, at no measurable one-time cost, and keeps hooks. A frozen TorchScript graph is
1.08-1.26x forward but has no hooks and is deprecated in torch 2.14 (FutureWarning); the pipeline's fp32
forward-only passes only run under --precision fp32, on CPUs without native bf16, or for exact.py's few
re-checked images, so it is not used. torch.compile takes 54 s to compile each of forward and backward on this
machine and its backward runs at half speed: it never pays off in a 3-minute run.
For bf16 forward-only passes, `fast_bf16` stores the conv and linear weights in bf16 once: bitwise the same
outputs as model.Autocast, 1.06-1.15x faster at batch 4 (no per-call weight casts). BatchNorm stays unfolded
there: folded before rounding, the bf16 logit error doubles (exact.py).
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def conv_bn_pairs(model: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """(conv name, BN name) pairs where the BN's only input is the conv's output and nothing else reads that output.

    Found with a torch.fx trace of the model; where the model does not trace (e.g. data-dependent Python in its
    forward), each child is tried in turn, and an untraceable nn.Sequential falls back to adjacent entries.
    """
    try:
        return [(prefix + c, prefix + b) for c, b in _pairs_fx(model)]
    except Exception:  # any untraceable user module: look inside it
        pass
    out = []
    if isinstance(model, nn.Sequential):
        kids = list(model.named_children())
        out += [(prefix + n1, prefix + n2) for (n1, m1), (n2, m2) in zip(kids, kids[1:])
                if isinstance(m1, CONVS) and isinstance(m2, NORMS)]
        return out
    for name, child in model.named_children():
        out += conv_bn_pairs(child, f"{prefix}{name}.")
    return out


def _pairs_fx(model: nn.Module) -> list[tuple[str, str]]:
    """conv_bn_pairs through a symbolic trace (exact about who consumes the conv's output)."""
    import torch.fx

    gm = torch.fx.symbolic_trace(model)
    mods = dict(model.named_modules())
    calls: dict[str, int] = {}   # a module called more than once (shared) cannot be folded for one call only
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), NORMS):
            continue
        src = node.args[0] if node.args else None
        if (isinstance(src, torch.fx.Node) and src.op == "call_module" and isinstance(mods.get(src.target), CONVS)
                and len(src.users) == 1 and len(node.args) == 1 and not node.kwargs
                and calls[str(src.target)] == 1 and calls[str(node.target)] == 1):
            pairs.append((str(src.target), str(node.target)))
    return pairs


@torch.no_grad()
def fold(conv: nn.Module, bn: nn.Module) -> None:
    """Fold an eval-mode BatchNorm's affine map into the convolution before it (in place, in float64)."""
    w = conv.weight.double()
    scale = bn.weight.double() if bn.affine else torch.ones_like(bn.running_var, dtype=torch.float64)
    shift = bn.bias.double() if bn.affine else torch.zeros_like(bn.running_var, dtype=torch.float64)
    inv = scale / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(inv)
    conv.weight.copy_((w * inv.view(-1, *([1] * (w.dim() - 1)))).to(conv.weight.dtype))
    new_bias = ((bias - bn.running_mean.double()) * inv + shift).to(conv.weight.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias, requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(new_bias)


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module called `name` (dotted) with `new`."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def fast_fp32(model: nn.Module, keep: Iterable[str] = (), channels_last: bool = True,
              frozen_params: bool = True) -> nn.Module:
    """An eval-mode deep copy with each conv's BatchNorm folded into it (BN -> nn.Identity), names unchanged.

    `keep`: module names (as in `model.named_modules()`) whose own output must stay exactly the eager one; a
    conv named there keeps its BatchNorm. BNs in training mode or without running statistics are left alone.
    The original model is not touched. Use it where the model's parameters are not changed afterwards (the
    sanity check randomises the original's layers, so it keeps the eager model).
    """
    keep = set(keep)
    fast = copy.deepcopy(model).eval()
    for conv_name, bn_name in conv_bn_pairs(fast):
        conv, bn = fast.get_submodule(conv_name), fast.get_submodule(bn_name)
        if conv_name in keep or bn.running_var is None or conv.weight.shape[0] != bn.num_features:
            continue
        fold(conv, bn)
        _set(fast, bn_name, nn.Identity())
    if frozen_params:  # input and activation gradients only: autograd then keeps nothing for weight gradients
        fast.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return fast


def folded_names(model: nn.Module, fast: nn.Module) -> list[str]:
    """Names of the BatchNorm modules that fast_fp32 replaced by nn.Identity."""
    old = dict(model.named_modules())
    return [n for n, m in fast.named_modules() if isinstance(m, nn.Identity) and isinstance(old.get(n), NORMS)]


def fast_bf16(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """model.Autocast of an eval-mode copy whose conv and linear weights are stored in bf16 already.

    Autocast casts those fp32 weights to bf16 at every call (for hw3 at batch 4 that re-reads the 33 MB fc
    weight each time); stored in bf16 they round exactly as autocast would, so the outputs are bitwise the same
    as `model.Autocast(model)`'s (tests/test_fastpath.py), only the casts are gone. Forward-only passes.
    """
    from model import Autocast

    fast = copy.deepcopy(model).eval().requires_grad_(False)
    for mod in fast.modules():
        if isinstance(mod, (*CONVS, nn.Linear)):
            mod.to(torch.bfloat16)
    return Autocast(fast, torch.device(device))
