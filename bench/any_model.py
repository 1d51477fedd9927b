"""Benchmark of the default run on 1000-class 224-px ImageNet classifiers over a plain folder of 5 photos.

    python bench/any_model.py [--arch resnet50 --arch efficientnet_b0] [--device cpu] [-- MAIN_FLAGS]

Each architecture runs in its own process (torchvision's model with random weights, 1000 classes, 224-px input,
ImageNet mean/std, shorter side then centre crop: what --weights DEFAULT sets up, without the download). Per task
of the default list (planned as main.py plans it: to 480 s on the reference CPU unless MAIN_FLAGS say otherwise) it
prints the wall time, the planner's cost-model prediction (budget.task_seconds, the seconds before its margin) and
their ratio, and the peak resident memory during the task (Linux: VmHWM, reset before each task). MAIN_FLAGS go to
main.py (e.g. `-- --set lime_samples=200`) and count for the planner too.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CACHE = REPO / ".cache" / "bench"
IMAGENET = ["--num-classes", "1000", "--input-size", "224", "--resize", "crop",
            "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--allow-random-weights"]


def photos(n: int = 5) -> Path:
    """n synthetic photos (640x480 and 480x640 JPEGs with gradients, discs and noise), made once."""
    import numpy as np
    from PIL import Image

    folder = CACHE / f"photos{n}"
    if len(list(folder.glob("*.jpg"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        w, h = (640, 480) if k % 2 == 0 else (480, 640)
        yy, xx = np.mgrid[0:h, 0:w]
        arr = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 50.0 * k)], -1)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(30, 150)
            arr[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] = rng.uniform(0, 255, 3)
        arr += rng.normal(0, 12, arr.shape)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(folder / f"IMG_2024010{k}_1200{k}.jpg", quality=90)
    return folder


def peak_reset() -> None:
    """Reset this process's peak resident set (Linux clear_refs 5), so VmHWM measures from now on."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_gib() -> float:
    """This process's peak resident set since the last reset (VmHWM), in GiB; ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def child(arch: str, device: str, extra: list[str], out: Path) -> dict:
    """One architecture's default run, timed and measured per task; returns the record."""
    import budget
    import context
    import main
    import tasks

    names = tasks.default_tasks()
    args = context.Options.from_args(main.parse_args(["--data", str(photos()), "--arch", arch, "--out", str(out),
                                                      "--device", device, *IMAGENET, *extra]))
    peak_reset()
    t0 = time.perf_counter()
    ctx = context.build(args)
    ctx.timings = []
    budget.apply(ctx, names, args.time_budget, args.probe_budget)
    rows = [{"task": "setup + plan", "seconds": time.perf_counter() - t0, "predicted": None, "peak_gib": peak_gib()}]
    predicted = ctx.cache.get("budget_prediction", {})
    for name in names:
        peak_reset()
        t0 = time.perf_counter()
        what = main.run_task(ctx, name)
        what = what if what.startswith("skipped: ") else ""
        rows.append({"task": name, "seconds": time.perf_counter() - t0, "predicted": predicted.get(name),
                     "peak_gib": peak_gib(), "note": what})
    import torch

    return {"arch": arch, "threads": torch.get_num_threads(), "images": len(ctx.files), "settings": ctx.settings,
            "rows": rows, "margin": budget.MARGIN}


def report(rec: dict) -> None:
    """Print one architecture's table."""
    print(f"\n{rec['arch']}: {rec['images']} photos, 1000 classes, 224 px, {rec['threads']} threads")
    print(f"{'task':<14} {'measured s':>10} {'predicted s':>11} {'pred/meas':>9} {'peak GiB':>8}  note")
    meas = pred = 0.0
    for r in rec["rows"]:
        p = r["predicted"]
        ratio = f"{p / r['seconds']:.2f}" if p is not None and r["seconds"] > 0 else ""
        print(f"{r['task']:<14} {r['seconds']:>10.1f} {'' if p is None else f'{p:.1f}':>11} {ratio:>9} "
              f"{r['peak_gib']:>8.2f}  {r.get('note', '')}")
        if p is not None:
            meas, pred = meas + r["seconds"], pred + p
    peak = max(r["peak_gib"] for r in rec["rows"])
    print(f"{'tasks total':<14} {meas:>10.1f} {pred:>11.1f} {pred / max(meas, 1e-9):>9.2f} {peak:>8.2f}  "
          f"(planner with its margin: {rec['margin'] * pred:.1f} s)")


def main_() -> int:
    """Run each architecture in a fresh process and print its table."""
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", action="append", help="torchvision classifier(s) (default: resnet50, efficientnet_b0)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        rec = child(a.child, a.device, extra, CACHE / f"out_{a.child}")
        print("RECORD " + json.dumps(rec))
        return 0
    photos()
    for arch in a.arch or ["resnet50", "efficientnet_b0"]:
        proc = subprocess.run([sys.executable, __file__, "--child", arch, "--device", a.device, "--", *extra],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"\n{arch}: failed\n{proc.stderr[-3000:]}")
            continue
        rec = json.loads(proc.stdout.split("RECORD ", 1)[1])
        for line in proc.stderr.splitlines():
            if line.startswith(("warning:", "weights:", "time budget:")):
                print(line)
        report(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
