"""Benchmark of the default pipeline on a Food-11-sized tree with a randomly initialised full-size model.

    python bench/run.py [--arch hw3|hw5ta] [--device cpu|cuda] [--extras]

Prints the machine, tight-loop throughput per batch size and memory format, then per task of the default run:
wall time, model passes (forward and forward+backward images), images per second, and efficiency = the time
the same passes take in a tight loop at the best batch size / the task's time. --extras adds the side-by-side
ratios of the explainer benchmarks (LIME vs lime's default usage; batched vs one-at-a-time filters).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import budget  # noqa: E402
import context  # noqa: E402
import main  # noqa: E402
import tasks  # noqa: E402
from bench.any_model import peak_gib, peak_reset  # noqa: E402
from bench.food11_tree import ensure_tree  # noqa: E402
from model import Preprocess, autocast, build_network, native_bf16  # noqa: E402

CACHE = REPO / ".cache" / "bench"


def machine(device: torch.device) -> str:
    """One line about the machine."""
    flags = ""
    if Path("/proc/cpuinfo").is_file():
        info = Path("/proc/cpuinfo").read_text()
        flags = " avx512_bf16" if "avx512_bf16" in info else (" avx512" if "avx512f" in info else "")
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"{platform.processor() or platform.machine()}{flags}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, device {device}{gpu}")


def random_checkpoint(arch: str) -> Path:
    """A seeded, randomly initialised full-size checkpoint with metadata (made once)."""
    path = CACHE / f"{arch}_random.pt"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        net = build_network(arch)
        torch.save({"model_state_dict": net.state_dict(), "meta": {"arch": arch, "arch_options": {"width": 1.0},
                                                                    "input_size": 128}}, path)
    return path


def rate(model: torch.nn.Module, device: torch.device, batch: int, grad: bool, channels_last: bool,
         seconds: float = 2.0, bf16: bool = False) -> float:
    """Images per second of forward (or forward+backward) passes at one batch size and memory format."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(batch, 3, 128, 128, device=device).contiguous(memory_format=fmt).requires_grad_(grad)
    m = model.to(memory_format=fmt)

    def step() -> None:
        with torch.set_grad_enabled(grad), autocast(device, "bf16" if bf16 else "fp32"):
            out = m(x)
            if grad:  # input gradients only, as the explainers take them
                torch.autograd.grad(out[:, 0].sum(), x)
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += batch
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.to(memory_format=torch.contiguous_format)
    return n / (time.perf_counter() - t0)


def tight_loop(model: torch.nn.Module, device: torch.device) -> dict[str, float]:
    """Print throughput per batch size and memory format; return the best forward and backward rates."""
    best = {"forward": 0.0, "backward": 0.0}
    batches = {"forward": [1, 2, 4, 8, 16, 32, 64], "backward": [1, 2, 4, 8, 16]}
    if device.type == "cuda":
        batches = {"forward": [16, 64, 256, 512], "backward": [16, 64, 128, 256]}
    print(f"\n{'pass':<9} {'batch':>5} {'NCHW img/s':>11} {'NHWC img/s':>11}")
    for kind, sizes in batches.items():
        for b in sizes:
            r = [rate(model, device, b, kind == "backward", cl) for cl in (False, True)]
            best[kind] = max(best[kind], *r)
            print(f"{kind:<9} {b:>5} {r[0]:>11.1f} {r[1]:>11.1f}", flush=True)
    if native_bf16(device):  # --precision bf16 (or a --time-budget that chose it) runs forward-only passes so
        for b in batches["forward"][:4]:
            r = rate(model, device, b, False, True, bf16=True)
            best["forward_bf16"] = max(best.get("forward_bf16", 0.0), r)
            print(f"{'fwd bf16':<9} {b:>5} {'':>11} {r:>11.1f}", flush=True)
    print(f"best: forward {best['forward']:.1f} img/s, forward+backward {best['backward']:.1f} img/s"
          + (f", bf16 forward {best['forward_bf16']:.1f} img/s" if "forward_bf16" in best else ""))
    return best


class PassCounter:
    """Counts images through the wrapped model: forward-only vs with gradients (forward+backward)."""

    def __init__(self, model: torch.nn.Module):
        self.fwd = self.bwd = 0

        def hook(module: torch.nn.Module, inputs: tuple) -> None:
            # a plain function, not a bound method: deepcopy keeps functions as they are, so the fast-path copies
            # of the model (explain.fast_model) carry this hook and count into this counter
            n = int(inputs[0].shape[0])
            if torch.is_grad_enabled():
                self.bwd += n
            else:
                self.fwd += n

        self.handle = model.register_forward_pre_hook(hook)


def run_pipeline(data: Path, ckpt: Path, out: Path, device: str, best: dict[str, float], extra: list[str]) -> float:
    """The default task list on the tree, timed per task with pass counts; returns the total seconds."""
    t_all = time.perf_counter()
    args = context.Options.from_args(main.parse_args(["--data", str(data), "--checkpoint", str(ckpt),
                                                      "--out", str(out), "--device", device, *extra]))
    t0 = time.perf_counter()
    ctx = context.build(args)
    ctx.timings = []
    budget.apply(ctx, tasks.default_tasks(), args.time_budget, args.probe_budget)   # as main.run does
    setup = time.perf_counter() - t0
    counter = PassCounter(ctx.model)
    if ctx.precision == "bf16":
        best = dict(best, forward=best.get("forward_bf16", best["forward"]))
        print(f"\nforward-only passes in bf16: efficiency against {best['forward']:.1f} img/s")
    predicted = ctx.cache.get("budget_prediction", {})   # the planner's cost model, before its margin
    print(f"\n{'task':<13} {'seconds':>8} {'fwd img':>8} {'bwd img':>8} {'img/s':>7} {'efficiency':>10} "
          f"{'predicted':>9} {'peak GiB':>8}")
    print(f"{'setup':<13} {setup:>8.1f}")
    meas = pred_sum = 0.0
    for name in tasks.default_tasks():
        peak_reset()
        f0, b0, t0 = counter.fwd, counter.bwd, time.perf_counter()
        what = main.run_task(ctx, name)
        sec = time.perf_counter() - t0
        ctx.timings.append((name, sec, what))
        if what.startswith("skipped: "):
            print(f"{name:<13} {what}")
            continue
        fwd, bwd = counter.fwd - f0, counter.bwd - b0
        ideal = fwd / best["forward"] + bwd / best["backward"]
        eff = f"{100 * ideal / sec:>9.0f}%" if fwd + bwd else f"{'-':>10}"
        pred = f"{predicted[name]:>9.1f}" if name in predicted else f"{'':>9}"
        print(f"{name:<13} {sec:>8.1f} {fwd:>8} {bwd:>8} {(fwd + bwd) / sec:>7.1f} {eff} {pred} {peak_gib():>8.2f}",
              flush=True)
        if name in predicted:
            meas, pred_sum = meas + sec, pred_sum + predicted[name]
    total = time.perf_counter() - t_all
    print(f"{'total':<13} {total:>8.1f}   (targets on a quiet 2-core CPU: at most 300 s for the demo and for "
          f"the full-size hw3 on the tree, 180 s of it for trust)")
    if meas:
        print(f"planner: predicted {pred_sum:.1f} s for the {meas:.1f} s its tasks took "
              f"(predicted / measured {pred_sum / meas:.2f})")
    curves_efficiency(ctx, best)
    return total


def curves_efficiency(ctx, best: dict[str, float]) -> None:
    """Deletion/insertion alone (the trust row also holds the sanity check's uncounted passes) vs the tight loop."""
    import numpy as np

    import metrics

    n, steps = min(4, len(ctx.images)), int(ctx.settings["deletion_steps"])
    ranks = np.stack([ctx.rng("bench", i).permutation(ctx.input_size ** 2) for i in range(n)])
    t0 = time.perf_counter()
    for mode in ("deletion", "insertion"):
        metrics.perturbation_curves(ctx.infer_model(), ctx.images[:n], ranks, ctx.targets()[:n], mode, steps,
                                    int(ctx.settings["batch_size"]))
    sec = time.perf_counter() - t0
    imgs = 2 * n * (steps + 1)
    print(f"deletion/insertion alone: {imgs} images in {sec:.1f} s, {imgs / sec:.1f} img/s, "
          f"efficiency {100 * imgs / best['forward'] / sec:.0f}%")


def extras(device: str) -> None:
    """Side-by-side ratios from the explainer benchmarks."""
    import subprocess

    for script in ("lime_speed.py", "filter_chunks.py"):
        path = REPO / "bench" / script
        if path.is_file():
            print(f"\n== bench/{script} ==", flush=True)
            subprocess.run([sys.executable, str(path)], check=False)


def cli() -> None:
    """Parse arguments and run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="hw3", choices=("hw3", "hw5ta"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--extras", action="store_true", help="also run the LIME and filter benchmarks")
    p.add_argument("--no-tight-loop", action="store_true", help="skip the batch-size table (use the probe instead)")
    p.add_argument("--demo", action="store_true",
                   help="the embedded demo and its committed checkpoint instead of the tree and a random full-size model")
    p.add_argument("args", nargs="*", help="extra main.py flags after --, e.g. -- --time-budget 540")
    a = p.parse_args()
    device = torch.device(a.device)
    print(machine(device))
    if a.demo:
        import demo
        from model import read_checkpoint

        data, ckpt = demo.ensure_demo_data(), REPO / "checkpoints" / "demo_hw3_w025.pt"
        _, meta = read_checkpoint(ckpt)
        model = Preprocess(build_network(meta["arch"], 11, meta["arch_options"]["width"])).to(device).eval()
    else:
        data, ckpt = ensure_tree(), random_checkpoint(a.arch)
        model = Preprocess(build_network(a.arch)).to(device).eval()
    if a.no_tight_loop:
        from budget import probe
        from settings import resolve

        best = probe(model, device, 128, resolve(device.type))
        if native_bf16(device):
            from budget import rate as probe_rate
            from model import Autocast

            best["forward_bf16"] = probe_rate(Autocast(model, device), device, 128, resolve(device.type)["batch_size"],
                                              False, seconds=2.0)
    else:
        best = tight_loop(model, device)
    run_pipeline(data, ckpt, CACHE / ("out-demo" if a.demo else f"out-{a.arch}"), a.device, best, a.args)
    if a.extras:
        extras(a.device)


if __name__ == "__main__":
    cli()
