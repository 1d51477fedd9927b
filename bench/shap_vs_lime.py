"""The shap task's cost against the lime task's, side by side in one process, on the same selected images.

    python bench/shap_vs_lime.py                       # the demo model (HW3 width 0.25, committed checkpoint)
    python bench/shap_vs_lime.py --arch hw3 --evals 500,1000   # a randomly initialised full-size HW3

Runs lime, then shap at each max_evals, `--reps` times interleaved, each the real task function (figures and
arrays included). The first round includes each task's one-time costs (imports, shap's masker tree), as a real
run pays them; later rounds show the steady state.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import context  # noqa: E402
import main  # noqa: E402
import tasks  # noqa: E402
from bench.run import random_checkpoint  # noqa: E402


def cli() -> None:
    """Parse flags, run the rounds, print one line per task run and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="demo", help="demo (committed checkpoint) or a full-size arch, e.g. hw3")
    ap.add_argument("--evals", default="500", help="comma list of shap_max_evals to time")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", default=None, help="--images for main.py (default: the default selection)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(tempfile.mkdtemp(prefix="shap_vs_lime."))
    flags = ["--out", str(out), "--device", "cpu", "--threads", str(a.threads)]
    if a.arch != "demo":
        flags += ["--checkpoint", str(random_checkpoint(a.arch))]
    if a.images:
        flags += ["--images", a.images]
    ctx = context.build(main.parse_args(flags))
    ctx.probs()
    print(f"{a.arch}: {len(ctx.files)} images, lime_samples {ctx.settings['lime_samples']}, {a.threads} threads")
    times: dict[str, list[float]] = {}
    for rep in range(a.reps):
        runs = [("lime", None)] + [("shap", int(e)) for e in a.evals.split(",")]
        for name, evals in runs:
            if evals is not None:
                ctx.settings["shap_max_evals"] = evals
            t0 = time.perf_counter()
            tasks.get(name)(ctx)
            dt = time.perf_counter() - t0
            label = name if evals is None else f"shap@{evals}"
            times.setdefault(label, []).append(dt)
            print(f"round {rep + 1}: {label:10s} {dt:7.2f} s", flush=True)
    for label, ts in times.items():
        if label != "lime":
            print(f"{label} / lime: " + ", ".join(f"round {i + 1} {t / lt:.2f}x"
                                                 for i, (t, lt) in enumerate(zip(ts, times["lime"]))))


if __name__ == "__main__":
    cli()
