"""Benchmark (not a test): the exact fp32 paths side by side, one-time cost counted.

    python bench/fastpath.py [--threads 1] [--clock cpu|wall] [--seconds 1.0] [--rounds 3] [--no-compile]

Full-size HW3 (random weights, seeded, BatchNorm statistics randomised so folding does real work) behind the
[0,1]-RGB wrapper, fp32, batch 2 and 4: images per second of forward passes and of forward + input-gradient
passes (as the explainers take them), for eager (NCHW, channels_last), fastpath.fast_fp32 (BN folded,
NCHW / channels_last), the folded model as frozen TorchScript (forward only), and torch.compile of the folded
model. Every path is checked against eager (max |logit difference| / max |logit|). Rounds are interleaved
(one timing of every path per round) and the median is printed, with the one-time cost of each path and the
number of images after which it pays off against channels_last eager.
The machine is shared by several busy processes, so by default the benchmark runs single-threaded and
measures this process's CPU time (time.process_time), which other processes barely inflate; --clock wall
measures wall time (use it with --threads 2 on a quiet machine). One-time costs are always wall time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastpath import fast_fp32  # noqa: E402
from model import Preprocess, build_network  # noqa: E402

BATCHES = (2, 4)


def hw3_model() -> nn.Module:
    """Full-size HW3 with seeded random weights and non-trivial BatchNorm statistics, eval mode."""
    torch.manual_seed(0)
    net = build_network("hw3")
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)
    return Preprocess(net, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()


def timed_rate(fn: Callable[[torch.Tensor], None], x: torch.Tensor, seconds: float,
               clock: Callable[[], float] = time.perf_counter) -> float:
    """Images per second of fn(x) over about `seconds` of `clock` (after one untimed call)."""
    fn(x)
    n, t0 = 0, clock()
    while clock() - t0 < seconds:
        fn(x)
        n += len(x)
    return n / (clock() - t0)


def forward(model: nn.Module) -> Callable[[torch.Tensor], None]:
    """A forward pass under inference mode."""
    def run(x: torch.Tensor) -> None:
        with torch.inference_mode():
            model(x)
    return run


def backward(model: nn.Module) -> Callable[[torch.Tensor], None]:
    """A forward pass and the input gradient of one logit per row."""
    def run(x: torch.Tensor) -> None:
        x = x.detach().requires_grad_(True)
        out = model(x)
        torch.autograd.grad(out[:, 0].sum(), x)
    return run


def main() -> None:
    """Build every path, check it against eager, time it in interleaved rounds and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per cell per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compile takes minutes here)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    eager = hw3_model()
    x4 = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = eager(x4)

    paths: dict[str, dict] = {}

    def add(name: str, build: Callable[[], nn.Module], fwd_only: bool = False) -> None:
        t0 = time.perf_counter()
        m = build()
        with torch.inference_mode():
            out = m(x4)   # the first call is part of the one-time cost (tracing, compiling, packing)
        setup_fwd = time.perf_counter() - t0
        setup_bwd = 0.0
        if not fwd_only:
            t0 = time.perf_counter()
            backward(m)(x4[:2])   # first backward (compile of the backward graph for torch.compile)
            setup_bwd = time.perf_counter() - t0
        err = float((out - ref).abs().max() / ref.abs().max())
        paths[name] = {"model": m, "setup": setup_fwd, "setup_bwd": setup_bwd, "err": err, "fwd_only": fwd_only}
        print(f"built {name:<34} one-time {setup_fwd:6.2f} s fwd + {setup_bwd:6.2f} s bwd, "
              f"max|dlogit|/max|logit| {err:.1e}", flush=True)

    add("eager NCHW", lambda: eager)
    add("eager channels_last", lambda: hw3_model().to(memory_format=torch.channels_last))
    add("folded NCHW", lambda: fast_fp32(eager, channels_last=False))
    add("folded channels_last", lambda: fast_fp32(eager, frozen_params=False))
    add("folded channels_last, no param grad", lambda: fast_fp32(eager))

    def frozen(optimize: bool) -> nn.Module:
        m = fast_fp32(eager)
        with torch.no_grad():
            ts = torch.jit.freeze(torch.jit.trace(m, x4[:2].contiguous(memory_format=torch.channels_last)))
        return torch.jit.optimize_for_inference(ts) if optimize else ts
    add("folded + frozen TorchScript", lambda: frozen(False), fwd_only=True)
    add("folded + frozen TS + optimize_for_inf", lambda: frozen(True), fwd_only=True)
    if not a.no_compile:
        add("folded + torch.compile", lambda: torch.compile(fast_fp32(eager)))

    rates: dict[tuple[str, str, int], list[float]] = {}
    for r in range(a.rounds):
        for name, info in paths.items():
            for kind in ("forward", "backward"):
                if kind == "backward" and info["fwd_only"]:
                    continue
                for b in BATCHES:
                    fn = (forward if kind == "forward" else backward)(info["model"])
                    rates.setdefault((name, kind, b), []).append(timed_rate(fn, x4[:b], a.seconds, clock))
        print(f"round {r + 1}/{a.rounds} done", flush=True)

    print(f"\nfull-size hw3, fp32, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{a.clock} clock, median of {a.rounds} interleaved rounds, images/s")
    print(f"{'path':<38} {'fwd b2':>7} {'fwd b4':>7} {'f+b b2':>7} {'f+b b4':>7} {'one-time s':>10} {'rel err':>8}")
    base = {k: statistics.median(rates[("eager channels_last", k, 4)]) for k in ("forward", "backward")}
    for name, info in paths.items():
        cells = []
        for kind in ("forward", "backward"):
            for b in BATCHES:
                v = rates.get((name, kind, b))
                cells.append(f"{statistics.median(v):7.1f}" if v else f"{'-':>7}")
        print(f"{name:<38} {' '.join(cells)} {info['setup'] + info['setup_bwd']:10.2f} {info['err']:8.1e}")
    print("\nagainst eager channels_last (batch 4): speed, and images before the extra one-time cost is repaid")
    for name, info in paths.items():
        for kind in ("forward", "backward"):
            v = rates.get((name, kind, 4))
            if not v:
                continue
            gain = 1 / base[kind] - 1 / statistics.median(v)   # seconds saved per image
            ref = paths["eager channels_last"]   # its own first calls (kernel selection) are paid by every path
            setup = info["setup"] - ref["setup"]
            if kind == "backward":
                setup += info["setup_bwd"] - ref["setup_bwd"]
            setup = max(setup, 0.0)
            even = f"{setup / gain:8.0f}" if gain > 0 else "   never"
            print(f"  {name:<38} {kind:<8} {statistics.median(v) / base[kind]:5.2f}x  {even} images")


if __name__ == "__main__":
    main()
