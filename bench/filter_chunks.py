"""Benchmark (not a test): filter-visualization time per filter at each chunk size, and the chosen one.

    python bench/filter_chunks.py [--steps 1] [--width 1.0] [--threads N] [--mode plain]

The full-size HW3 model (random weights, seeded), truncated after block 3's ReLU (cnn.10, the hw3 default),
128-px images, 16 and 64 filters, chunk sizes 1, 2, 4, 8, 16, 64. Each cell times `--steps` optimisation
steps (plus the final forward pass) after a warm-up, and reports seconds per filter scaled to the default
100 steps. The settings' chunk size (`filter_chunk`) is marked, with its ratio to the best. On CUDA the same
table runs on the GPU; without CUDA that column says "not measured". The machine is shared: numbers are noisy.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import filter_vis as fv  # noqa: E402
import settings  # noqa: E402
from model import HW3Net, Preprocess  # noqa: E402

CHUNKS = (1, 2, 4, 8, 16, 64)
COUNTS = (16, 64)
LAYER = "cnn.10"


def per_filter_seconds(model: torch.nn.Module, module: torch.nn.Module, n: int, chunk: int, steps: int,
                       mode: str, device: torch.device) -> float:
    """Seconds per filter for 100 steps, from `steps` timed steps of n filters in chunks of `chunk`."""
    gens = [torch.Generator().manual_seed(f) for f in range(n)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fv.visualize_filters(model, module, list(range(n)), gens, mode=mode, steps=steps, lr=0.1, chunk=chunk, size=128,
                         device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 100 / steps


def table(device: torch.device, width: float, steps: int, mode: str) -> dict[int, dict[int, float]]:
    """{filters: {chunk: seconds per filter per 100 steps}} on one device."""
    torch.manual_seed(0)
    model = Preprocess(HW3Net(11, width)).to(device).eval().to(memory_format=torch.channels_last)  # as context.build
    module = dict(model.net.named_modules())[LAYER]
    per_filter_seconds(model, module, 2, 2, 1, mode, device)  # warm-up (allocator, kernels)
    out: dict[int, dict[int, float]] = {}
    for n in COUNTS:
        out[n] = {}
        for chunk in CHUNKS:
            if chunk > n:
                continue
            out[n][chunk] = per_filter_seconds(model, module, n, chunk, steps, mode, device)
            print(f"  {device.type}: {n} filters, chunk {chunk}: {out[n][chunk]:.2f} s/filter", file=sys.stderr,
                  flush=True)
    return out


def main() -> None:
    """Measure on the CPU (and CUDA when present) and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1, help="timed optimisation steps per cell")
    p.add_argument("--width", type=float, default=1.0, help="HW3 width (1.0 = full size; the demo is 0.25)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--mode", default="plain", choices=("plain", "robust"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    results = {d.type: table(d, args.width, args.steps, args.mode) for d in devices}
    print(f"Filter visualization ({args.mode}), HW3 width {args.width:g}, layer {LAYER}, 128 px, "
          f"{torch.get_num_threads()} CPU threads, {args.steps} timed step(s) per cell, scaled to 100 steps.")
    print("Seconds per filter (lower is better); * = the settings' chunk size. Shared machine: noisy.\n")
    print(f"{'device':<6} {'filters':>7} " + " ".join(f"{'chunk ' + str(c):>9}" for c in CHUNKS)
          + f" {'chosen':>7} {'chosen/best':>11}")
    for dev in ("cpu", "cuda"):
        chosen = settings.resolve(dev)["filter_chunk"]
        if dev not in results:
            print(f"{dev:<6} {'all':>7} " + "not measured (no CUDA on this machine)")
            continue
        for n, row in results[dev].items():
            cells = " ".join(f"{row[c]:>8.2f}{'*' if c == min(chosen, n) else ' '}" if c in row else f"{'-':>9}"
                             for c in CHUNKS)
            pick = row.get(min(chosen, n), float("nan"))
            print(f"{dev:<6} {n:>7} {cells} {min(chosen, n):>7} {pick / min(row.values()):>11.2f}")
    if "cuda" in results:
        for n, row in results["cuda"].items():
            print(f"cuda {n} filters: one chunk vs one at a time: {row[1] / row[max(row)]:.1f}x faster")


if __name__ == "__main__":
    main()
