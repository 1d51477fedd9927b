"""Benchmark (not a test): how many LIME samples per image make the per-class LIME figure's top superpixels stable.

    python bench/lime_stability.py [--counts 100,300,1000] [--per-class 1] [--threads N]

On the demo's validation split (the first --per-class images of every class, explaining the true class), LIME runs
with two seeds at each sample count. Per image and count it reports metrics.stability of the two weight maps
(Spearman of the pixel values, IoU of their top 5% pixels) and the overlap (intersection over union) of the two
seeds' top 5 superpixels; the table gives the means over the images and the seconds per explanation.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dataset  # noqa: E402
import demo  # noqa: E402
import lime_explain as L  # noqa: E402
import metrics  # noqa: E402
import settings  # noqa: E402
from model import HW3Net, Preprocess, load_weights, read_checkpoint  # noqa: E402

TOP = 5     # superpixels compared between the two seeds


def demo_model() -> torch.nn.Module:
    """The committed demo checkpoint behind the [0,1]-RGB wrapper."""
    state, _ = read_checkpoint(demo.DEMO_CHECKPOINT)
    net = HW3Net(11, 0.25)
    load_weights(net, state, demo.DEMO_CHECKPOINT, "hw3")
    return Preprocess(net).eval()


def top_overlap(a: np.ndarray, b: np.ndarray, k: int = TOP) -> float:
    """Intersection over union of the k superpixels with the largest weights of two explanations."""
    sa, sb = set(np.argsort(-a, kind="stable")[:k].tolist()), set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(sa & sb) / len(sa | sb)


def main() -> None:
    """Print one row per sample count: Spearman, top-5% IoU, top-5 superpixel overlap, seconds per explanation."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="100,300,1000")
    ap.add_argument("--per-class", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = settings.resolve("cpu")
    val = dataset.open_split(demo.ensure_demo_data(), "validation")
    idx = [i for c in range(11) for i in [k for k, lb in enumerate(val.labels) if lb == c][:args.per_class]]
    images, _ = dataset.load_batch(val, idx, 128)
    targets = torch.tensor([val.labels[i] for i in idx])
    model = demo_model()
    print(f"{len(idx)} validation images, seeds 0 and 1, {s['lime_segments']} SLIC segments asked")
    print("samples  spearman  top-5% IoU  top-5 superpixels IoU  s/explanation")
    for n in (int(c) for c in args.counts.split(",")):
        t = time.perf_counter()
        runs = [L.lime_attribution(model, images, targets, batch_size=s["lime_batch_size"], seed=seed,
                                   keys=[val.files[i] for i in idx], samples=n, segments=s["lime_segments"],
                                   compactness=s["lime_compactness"], sigma=s["lime_sigma"]) for seed in (0, 1)]
        sec = (time.perf_counter() - t) / (2 * len(idx))
        pairs = np.array([metrics.stability(a, b) for a, b in zip(runs[0].maps, runs[1].maps)])
        tops = [top_overlap(L.superpixel_weights(a, int(c)), L.superpixel_weights(b, int(c)))
                for a, b, c in zip(runs[0].explanations, runs[1].explanations, targets)]
        print(f"{n:7d}  {pairs[:, 0].mean():8.3f}  {pairs[:, 1].mean():10.3f}  {np.mean(tops):21.3f}  {sec:13.2f}")


if __name__ == "__main__":
    main()
