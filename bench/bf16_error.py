"""Benchmark (not a test): the bf16 logit error that exact.py's re-check bound rests on, and the re-check rate.

    python bench/bf16_error.py [--limit N] [--threads 1] [--skip-tree]

1. The demo checkpoint on every demo image (training, validation, testing), and
2. the full-size hw3 with bench/run.py's random weights on the Food-11-sized bench tree's validation split
   (bench/food11_tree.py makes it; --limit N takes its first N images),
both through bf16 autocast (model.Autocast) and fp32: the distribution of d / ||l'||_2 (d = spread over classes
of the bf16 logit error, l' = bf16 logits), how many predictions plain bf16 flips, and with exact.recheck: the
share of images re-checked in fp32 and the predictions that still differ from fp32 (must be 0).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dataset  # noqa: E402
import demo  # noqa: E402
import exact  # noqa: E402
from model import Autocast, Preprocess, build_network, load_weights, read_checkpoint  # noqa: E402


def demo_model() -> torch.nn.Module:
    """The committed demo checkpoint behind the wrapper, as context.build makes it."""
    state, _ = read_checkpoint(demo.DEMO_CHECKPOINT)
    net = build_network("hw3", 11, 0.25)
    load_weights(net, state, demo.DEMO_CHECKPOINT, "hw3")
    return Preprocess(net).eval().to(memory_format=torch.channels_last)


def random_hw3() -> torch.nn.Module:
    """bench/run.py's random full-size hw3 (torch.manual_seed(0), default init)."""
    torch.manual_seed(0)
    return Preprocess(build_network("hw3")).eval().to(memory_format=torch.channels_last)


def report(name: str, model: torch.nn.Module, batches) -> None:
    """Both passes over the batches; print the error distribution, flips, re-check rate and mismatches."""
    bf16 = Autocast(model, torch.device("cpu"))
    ratios, flips, rechecked, wrong, n = [], 0, 0, 0, 0
    t32 = t16 = 0.0
    for x in batches:
        t0 = time.perf_counter()
        with torch.inference_mode():
            lb = bf16(x)
        t1 = time.perf_counter()
        with torch.inference_mode():
            lf = model(x).float()
        t16, t32 = t16 + t1 - t0, t32 + time.perf_counter() - t1
        ratios.append(exact.spread(lb, lf).numpy())
        flips += int((lb.argmax(1) != lf.argmax(1)).sum())
        checked = exact.recheck(model, bf16, x, bf16_logits=lb)
        rechecked += int(checked.rechecked.sum())
        wrong += int((checked.probs.argmax(1) != lf.argmax(1)).sum())
        n += len(x)
    r = np.concatenate(ratios)
    print(f"{name}: {n} images; d/||l'||_2 median {np.median(r):.2e}, 99% {np.quantile(r, 0.99):.2e}, "
          f"99.9% {np.quantile(r, 0.999):.2e}, max {r.max():.2e} (bound in use {exact.BF16_ERROR_RATIO:g}: "
          f"{exact.BF16_ERROR_RATIO / r.max():.1f}x the max)")
    print(f"  plain bf16 flips {flips} predictions; with the re-check: {rechecked} re-checked "
          f"({100 * rechecked / n:.2f}%), {wrong} differ from fp32; "
          f"bf16 {n / t16:.1f} img/s, fp32 {n / t32:.1f} img/s", flush=True)


def main() -> None:
    """Measure on the demo and the bench tree."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, help="bench tree: only the first N validation images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-tree", action="store_true", help="only the demo")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    root = demo.ensure_demo_data()
    images = []
    for split in ("training", "validation", "testing"):
        s = dataset.open_split(root, split)
        images.append(dataset.load_batch(s, list(range(len(s.files))), 128)[0])
    x = torch.cat(images)
    report("demo checkpoint, all demo images", demo_model(), x.split(4))
    if a.skip_tree:
        return
    from bench.food11_tree import ensure_tree

    val = dataset.open_split(ensure_tree(), "validation")
    if a.limit:
        val = dataset.ImageSet(val.name, val.paths[:a.limit], val.labels[:a.limit])
    loader = dataset.split_loader(val, 128, 4, workers=1)
    report("full-size hw3 (random), bench tree validation", random_hw3(),
           (xb.float() / 255.0 for xb, _ in dataset.batches(loader)))


if __name__ == "__main__":
    main()
