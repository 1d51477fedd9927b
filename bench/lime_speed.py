"""Benchmark (not a test): LIME's cost against the model's forward-pass floor, lime's default usage, and bf16.

    python bench/lime_speed.py [--samples 100] [--demo-samples 1000] [--threads N]

1. Forward only, per image, for the demo model and the full-size HW3 (random weights): batch sizes
   1..32, NCHW vs channels_last, fp32 (and bf16 at the best fp32 setting).
2. Per explanation: our classifier_fn + explainer (settings' lime_batch_size) vs the floor
   num_samples x best per-image forward time; and lime's default usage on the same image (stock
   LimeImageExplainer, batch_size 10, a plain classifier function without inference mode).
3. bf16 autocast: time per explanation and the Spearman rank correlation of its superpixel weights
   against fp32 (same seed, so the same perturbations).
The machine is shared by several busy processes, so wall-clock times swing several-fold from one second to
the next. By default the benchmark therefore runs single-threaded and measures this process's CPU time
(time.process_time), which other processes do not inflate; --clock wall measures wall time instead.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataset  # noqa: E402
import demo  # noqa: E402
import lime_explain as L  # noqa: E402
import settings  # noqa: E402
from model import HW3Net, Preprocess, load_weights, read_checkpoint  # noqa: E402

BATCHES = (1, 2, 4, 8, 16, 32)


def models() -> dict[str, torch.nn.Module]:
    """The demo checkpoint (HW3 at width 0.25) and the full-size HW3 with random weights (seeded)."""
    state, _ = read_checkpoint(demo.DEMO_CHECKPOINT)
    small = HW3Net(11, 0.25)
    load_weights(small, state, demo.DEMO_CHECKPOINT, "hw3")
    torch.manual_seed(0)
    return {"demo hw3 w0.25": Preprocess(small).eval(), "hw3 full (random)": Preprocess(HW3Net(11, 1.0)).eval()}


def forward_ms(net: torch.nn.Module, bs: int, channels_last: bool, precision: str, budget_s: float,
               min_reps: int, clock: Callable[[], float]) -> float:
    """Best per-image forward time (ms) at a batch size, input built from an NHWC array like classifier_fn's."""
    net = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    batch = np.random.default_rng(0).random((bs, 128, 128, 3), dtype=np.float32)
    best, t_end, reps = float("inf"), time.perf_counter() + budget_s, 0
    with torch.inference_mode(), L.autocast(torch.device("cpu"), precision):
        net(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous())  # warm-up
        while reps < min_reps or time.perf_counter() < t_end:
            t = clock()
            x = torch.from_numpy(batch).permute(0, 3, 1, 2)
            net(x if channels_last else x.contiguous())
            best = min(best, (clock() - t) / bs)
            reps += 1
    return best * 1000


def plain_classifier(net: torch.nn.Module):
    """lime's default usage, as in the course code: one forward per call, autograd on, no batching of ours."""
    def fn(images: np.ndarray) -> np.ndarray:
        x = torch.FloatTensor(images).permute(0, 3, 1, 2)
        return torch.softmax(net(x), 1).detach().numpy()
    return fn


def timed(f: Callable, clock: Callable[[], float]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    t = clock()
    out = f()
    return clock() - t, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200, help="LIME samples per explanation for the full-size model")
    p.add_argument("--demo-samples", type=int, default=1000, help="LIME samples per explanation for the demo model")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's choice)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="process CPU time or wall time")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cfg = settings.resolve("cpu")
    bs = cfg["lime_batch_size"]
    cl = True  # the run converts its model to channels_last (context.build)
    data = demo.ensure_demo_data()
    val = dataset.open_split(data, "validation")
    img, _ = dataset.load_batch(val, [val.files.index(demo.gt_subset(data)[0])], 128)
    hwc = img[0].permute(1, 2, 0).numpy().astype(np.float32)
    seg = L.segmenter(cfg["lime_segments"], cfg["lime_compactness"], cfg["lime_sigma"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}; settings: lime_batch_size={bs}, "
          f"channels_last={cl}")

    print("\n1. forward only, best ms per image (fp32)")
    print(f"{'model':<20} {'format':<14} " + " ".join(f"{'bs ' + str(b):>8}" for b in BATCHES))
    floors = {}
    for name, net in models().items():
        budget, reps = (1.5, 2) if "demo" in name else (0.0, 1)   # the full model: one timed pass after warm-up
        rows = {}
        for fmt in (False, True):
            rows[fmt] = [forward_ms(net, b, fmt, "fp32", budget, reps, clock) for b in BATCHES]
            print(f"{name:<20} {'channels_last' if fmt else 'NCHW':<14} " + " ".join(f"{v:8.2f}" for v in rows[fmt]))
        fmt, i = min(((f, j) for f in rows for j in range(len(BATCHES))), key=lambda k: rows[k[0]][k[1]])
        bf = forward_ms(net, BATCHES[i], fmt, "bf16", budget, reps, clock)
        floors[name] = rows[fmt][i]
        print(f"{name:<20} best fp32 {rows[fmt][i]:.2f} ms at bs {BATCHES[i]} "
              f"{'channels_last' if fmt else 'NCHW'}; bf16 there {bf:.2f} ms ({rows[fmt][i] / bf:.2f}x); "
              f"at our setting (bs {bs}, {'channels_last' if cl else 'NCHW'}) {rows[cl][BATCHES.index(bs)]:.2f} ms")
    nets = models()

    print("\n2./3. per explanation (one image, seed 0, SLIC 100); floor = samples x best per-image forward")
    print(f"{'model':<20} {'samples':>7} {'floor s':>8} {'ours s':>8} {'ours/floor':>10} {'lime default s':>14} "
          f"{'default/ours':>12} {'bf16 s':>8} {'fp32/bf16':>9} {'spearman':>8}")
    for name, net in nets.items():
        n = args.demo_samples if "demo" in name else args.samples
        net = net.to(memory_format=torch.channels_last)   # as context.build does
        ours = L.classifier(net, torch.device("cpu"), bs, "fp32", cl)
        t_ours, e32 = timed(lambda: L.explain_images(ours, img, [0], 11, n, bs, seg)[0], clock)
        bf = L.classifier(net, torch.device("cpu"), bs, "bf16", cl)
        t_bf, e16 = timed(lambda: L.explain_images(bf, img, [0], 11, n, bs, seg)[0], clock)
        t_def, _ = timed(lambda: L.LimeImageExplainer(random_state=0).explain_instance(
            hwc, plain_classifier(net), top_labels=11, num_samples=n, batch_size=10, segmentation_fn=seg), clock)
        c = int(np.argmax(ours(hwc[None])[0]))
        rho = spearmanr(L.superpixel_weights(e32, c), L.superpixel_weights(e16, c)).statistic
        floor = n * floors[name] / 1000
        print(f"{name:<20} {n:>7} {floor:8.2f} {t_ours:8.2f} {t_ours / floor:10.2f} {t_def:14.2f} "
              f"{t_def / t_ours:12.2f} {t_bf:8.2f} {t_ours / t_bf:9.2f} {rho:8.3f}")


if __name__ == "__main__":
    main()
