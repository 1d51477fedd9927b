"""Benchmark of the whole-split audit (--task audit) against its model passes in a tight loop, and Ray against local.

    python bench/audit.py [--limit N] [--device cpu|cuda] [--no-ray]

Audits the bench tree's validation split (bench/food11_tree.py: 3430 JPEGs around 512x384) with a randomly
initialised full-size hw3, or with --limit N an evenly spaced subset of N of its images (rendered alone, the same
pixels as in the full tree). Prints the tight loop of exactly the audit's model passes (per batch: one Grad-CAM
forward whose backward stays in the head, audit_steps - 1 deletion forwards) on random tensors at the run's batch
size, the local engine's time and its efficiency against that loop (at most 1.3x, i.e. >= 77%), the
per-image cost, and the Ray engine's time on a local Ray (start and stop included) with its overhead against local.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import audit  # noqa: E402
from bench.food11_tree import BENCH_DIR, COUNTS, _one, ensure_tree  # noqa: E402
from bench.run import machine, random_checkpoint  # noqa: E402
from model import Preprocess, build_network  # noqa: E402
from settings import resolve  # noqa: E402

CACHE = REPO / ".cache" / "bench"


def subset_tree(n: int) -> Path:
    """A tree whose validation/ holds n evenly spaced images of the bench tree's validation split (made once)."""
    root = CACHE / f"audit-subset-{n}"
    if (root / "validation").is_dir() and len(list((root / "validation").iterdir())) == n:
        return root
    base = sum(sum(c) for s, c in COUNTS.items() if s == "training")   # validation jobs follow the training ones
    jobs = [(label, i) for label, count in enumerate(COUNTS["validation"]) for i in range(count)]
    picks = np.linspace(0, len(jobs) - 1, n).round().astype(int)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".audit-subset-", dir=CACHE))
    (tmp / "validation").mkdir()
    full = BENCH_DIR / "validation"
    for k in picks:
        label, i = jobs[k]
        name = f"{label}_{i}.jpg"
        if (full / name).is_file():
            shutil.copyfile(full / name, tmp / "validation" / name)
        else:
            _one((str(tmp / "validation"), name, label, base + int(k)))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the loader's decoding workers)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def tight_loop(model: torch.nn.Module, layer: torch.nn.Module, n: int, batch: int, steps: int,
               device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds of the audit's model passes of n images on random tensors: Grad-CAM pass + (steps - 1)
    forwards."""
    x = torch.rand(batch, 3, 128, 128, device=device).contiguous(memory_format=torch.channels_last)
    chunks = -(-n // batch)
    audit.cam_pass(model, layer, x[:1].cpu(), batch, 16)   # warm-up
    t0, c0 = time.perf_counter(), cpu_seconds()
    for _ in range(chunks):
        audit.cam_pass(model, layer, x, batch, 16)
    with torch.inference_mode():
        for _ in range(-(-n * (steps - 1) // batch)):
            model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, cpu_seconds() - c0


def cli() -> None:
    """Parse arguments, run the tight loop, the local engine and (unless --no-ray) the Ray engine."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, help="audit an evenly spaced subset of N validation images")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    print(machine(device))
    data = subset_tree(a.limit) if a.limit else ensure_tree()
    n = len(list((data / "validation").iterdir()))
    state = torch.load(random_checkpoint("hw3"), weights_only=True)["model_state_dict"]
    net = build_network("hw3")
    net.load_state_dict(state)
    model = Preprocess(net).to(device).eval().to(memory_format=torch.channels_last)
    s = resolve(device.type)
    cfg = audit.AuditConfig(data=str(data), split="validation", size=128, cv2_mode=False,
                            batch_size=int(s["eval_batch_size"]), grid=int(s["audit_grid"]),
                            steps=int(s["audit_steps"]), border=float(s["audit_border"]), seed=0, layer="cnn.18",
                            precision="fp32", threads=torch.get_num_threads(), workers=int(s["loader_workers"]))
    passes = n * cfg.steps
    print(f"{n} images of {data}/validation, batch {cfg.batch_size}, {cfg.steps} deletion steps: "
          f"{n} Grad-CAM passes + {n * (cfg.steps - 1)} forward passes")
    tight, tight_cpu = tight_loop(model, net.cnn[18], n, cfg.batch_size, cfg.steps, device)
    print(f"tight loop of the same passes: {tight:.1f} s ({passes / tight:.1f} passes/s), {tight_cpu:.1f} CPU s")
    t0, c0 = time.perf_counter(), cpu_seconds()
    rows = audit.run_local(model, cfg, 11)
    local, local_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"local engine: {local:.1f} s, {1000 * local / n:.1f} ms/image, {local / tight:.2f}x the tight loop "
          f"(efficiency {100 * tight / local:.0f}%); CPU {local_cpu:.1f} s incl. decoding workers, "
          f"{local_cpu / tight_cpu:.2f}x the loop's CPU", flush=True)
    if not a.no_ray:
        t0 = time.perf_counter()
        ray_rows = audit.run_ray(model, cfg, 11, None, device)
        ray = time.perf_counter() - t0
        same = all(np.array_equal(getattr(rows, f), getattr(ray_rows, f), equal_nan=True)
                   for f in ("pred", "confidence", "maps", "deletion_auc", "border_mass"))
        print(f"ray engine (local Ray, start and stop included): {ray:.1f} s, {ray / local:.2f}x local "
              f"(overhead {ray - local:+.1f} s); rows identical to local: {same}")


if __name__ == "__main__":
    cli()
