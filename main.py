"""Explain an image CNN: parse arguments, build the run context, run the tasks in order, write run.json."""
from __future__ import annotations

import argparse
import math
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults only where they say something (not None/False, not already in the help text)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a UserError), not the usage block."""

    def error(self, message: str) -> NoReturn:
        from errors import UserError

        raise UserError(f"{message} (python main.py --help lists the options)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    import tasks

    p = _Parser(
        description="Explain what an image CNN has learned (saliency, filters, LIME, Deep Dream, trust metrics).",
        formatter_class=_Help)
    p.add_argument("--task", action="append", metavar="NAME",
                   help=f"task(s) to run, repeatable or comma list; default: all but train. One of: {', '.join(tasks.names())}")
    p.add_argument("--data", help="Food-11 folder (training/validation/testing), a folder of images or one image; "
                                  "default: the embedded demo")
    p.add_argument("--out", default="output", help="output folder")
    p.add_argument("--arch", help="hw3 | hw5ta | a torchvision model name | path/to/file.py:callable (which returns "
                                  "the network with its weights, or (network, meta dict)) (default: from the "
                                  "checkpoint, else hw3)")
    p.add_argument("--weights", metavar="DEFAULT|NAME",
                   help="torchvision's trained weights for --arch NAME (DEFAULT or an enum name such as IMAGENET1K_V2), "
                        "with their preprocessing and class names; read from torch's hub cache, downloaded when missing")
    p.add_argument("--width", type=float, help="channel width multiplier for hw3/hw5ta (the demo uses 0.25)")
    p.add_argument("--num-classes", type=int, help="number of classes (default: number of class names)")
    p.add_argument("--checkpoint", help="model weights (default: the demo checkpoint when --data is not given)")
    p.add_argument("--trust-pickle", action="store_true", help="allow checkpoints holding a whole pickled module")
    p.add_argument("--trust-checkpoint-code", action="store_true",
                   help="run the model file a checkpoint's meta names (arch path/to/file.py:callable); without it "
                        "only a model file named by --arch runs")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="explain an untrained network (an --arch built by name with no checkpoint and no --weights)")
    p.add_argument("--images", action="append", metavar="IDX|FILE|all",
                   help="images to explain: indices into the sorted listing and/or file names (repeatable or comma "
                        "list), or all; default: training indices 83,4218,4707,8598 (else the first image of classes "
                        "0-3) for Food-11 trees, every image up to 8 for a plain folder")
    p.add_argument("--split", help="split the explained images come from (default: training)")
    p.add_argument("--eval-split", default="validation", help="split for the confusion matrix and per-class analyses")
    p.add_argument("--input-size", type=int, help="model input size in pixels (default: checkpoint's, else 128)")
    p.add_argument("--mean", help="per-channel normalisation mean, e.g. 0.485,0.456,0.406 (applied inside the model)")
    p.add_argument("--std", help="per-channel normalisation std")
    p.add_argument("--bgr", action="store_true", help="the model was trained on BGR input (--mean/--std stay in RGB order)")
    p.add_argument("--resize", choices=("stretch", "crop"),
                   help="stretch to the input size, or crop: shorter side then centre crop as torchvision's ImageNet "
                        "transforms (default: what the model declares, else stretch)")
    p.add_argument("--classes", metavar="IDS",
                   help="classes for the class models, list and/or ranges, e.g. 0-3,7 (default: every class when "
                        "there are at most 12, else the selected images' target and predicted classes)")
    p.add_argument("--cv2-preprocess", action="store_true",
                   help="read and resize with OpenCV exactly like the HW3 baseline (implies --bgr)")
    p.add_argument("--class-names", help="text file with one class name a line (default: Food-11's)")
    p.add_argument("--target", help="class each explanation explains: pred | true | <class id> "
                                    "(default: the true label when known, else the prediction)")
    p.add_argument("--layer", action="append", metavar="NAME",
                   help="layer(s) of your network by module name (e.g. cnn.14): Grad-CAM, filters, Deep Dream")
    p.add_argument("--filters", help="filters to visualise, list and/or ranges, e.g. 0-15 or 0,3,7")
    p.add_argument("--device", help="cpu | cuda | cuda:N (default: CUDA when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random step")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="forward-only sampling passes (LIME, SHAP, occlusion, deletion/insertion) and optimised "
                        "pictures (filters, Deep Dream, class models): default bf16 where the device computes it "
                        "natively (AVX-512 BF16 / AMX CPUs, bf16 GPUs), else fp32; attribution gradients and "
                        "predictions stay fp32")
    p.add_argument("--trust", choices=("cheap", "full"), default="cheap",
                   help="trust metrics: cheap (default run) or full (more images incl. the demo's ground-truth subset, finer steps)")
    p.add_argument("--full", action="store_true", help="paper-grade settings (more samples and steps; slower)")
    p.add_argument("--time-budget", type=time_budget, metavar="SECONDS|none",
                   help="plan the run to this many seconds on the reference 2-core CPU from a cost model of the model "
                        "(never timed, so every machine computes the same settings): sample counts scaled down just "
                        "enough, each change printed and recorded in run.json; none: the full settings whatever they "
                        "cost (default: 480 for the default task list)")
    p.add_argument("--probe-budget", action="store_true",
                   help="plan --time-budget from a throughput probe of this machine instead: machine-dependent, so "
                        "another machine computes other settings and draws other figures")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting (see settings.py)")
    # audit task (--task audit) -- engine flags
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="audit: run in this process (local) or through Ray Data actors (ray)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="audit with --engine ray: join this Ray cluster (host:port, ray://host:port or auto); "
                        "default: start a local Ray for the run")
    # train task
    p.add_argument("--epochs", type=int, default=30, help="train: epochs")
    p.add_argument("--batch-size", type=int, default=64, help="train: batch size")
    p.add_argument("--lr", type=float, default=1e-3, help="train: Adam learning rate")
    p.add_argument("--noise", type=float, default=0.0,
                   help="train: Gaussian pixel-noise augmentation, std drawn up to this value per image (the demo "
                        "uses 0.2 so SmoothGrad's noisy copies stay on the data the model knows)")
    p.add_argument("--limit", type=int, help="train: use only the first N images per class (quick runs)")
    p.add_argument("--save", help="train: checkpoint path (default: <out>/checkpoint.pt)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="train: learning-rate schedule over the epochs (cosine decays --lr to 0; the demo uses it)")
    p.add_argument("--init", help="train: start from this checkpoint's weights (a second stage, e.g. at a lower --lr)")
    return p.parse_args(argv)


def time_budget(text: str) -> float | str:
    """--time-budget: a finite positive number of seconds, or none."""
    if text.strip().lower() == "none":
        return "none"
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds, or none")
    return seconds


def task_list(asked: tuple[str, ...]) -> list[str]:
    """The tasks to run, validated, in registry order (no names: the default list)."""
    import tasks
    from errors import UserError

    if not asked:
        return tasks.default_tasks()
    unknown = [t for t in asked if t not in tasks.names()]
    if unknown:
        raise UserError(f"unknown task {unknown[0]!r}; tasks: {', '.join(tasks.names())}")
    return [t for t in tasks.names() if t in asked]


def run(opts) -> int:
    """Run the tasks; returns the exit code."""
    import dataclasses

    import context
    from outputs import write_json

    names = task_list(opts.tasks)
    context.check_options(opts, names)
    rows: list[tuple[str, float, str]] = []
    started = time.perf_counter()
    if "train" in names:
        import train

        t0 = time.perf_counter()
        saved = train.task_train(opts)
        rows.append(("train", time.perf_counter() - t0, str(saved)))
        names.remove("train")
        if names and not opts.checkpoint:
            opts = dataclasses.replace(opts, checkpoint=str(saved))
    if names and "audit" in names and opts.engine == "ray" and opts.ray_address:   # before any work
        import audit

        audit.probe_address(opts.ray_address)
    if names:
        t0 = time.perf_counter()
        ctx = context.build(opts)
        rows.append(("setup", time.perf_counter() - t0, f"{len(ctx.indices)} images from {ctx.imageset.name}/"))
        ctx.timings = rows   # the report task lists the timings so far (run.json comes after it)
        context.validate(ctx, names)
        write_json(ctx.out / "run.json", {"status": "running", "command": opts.command})
        try:
            run_tasks(ctx, names, rows)
        except BaseException as exc:
            write_json(ctx.out / "run.json", final_record(ctx, started, exc))
            raise
        write_json(ctx.out / "run.json", final_record(ctx, started, None))
    print_table(rows, time.perf_counter() - started)
    return 0


def run_tasks(ctx: Any, names: list[str], rows: list[tuple[str, float, str]]) -> None:
    """Plan the time budget when asked (or for the default list), then run each task in order."""
    import tasks

    if ctx.opts.time_budget is not None or names == tasks.default_tasks():
        import budget

        budget.apply(ctx, names, ctx.opts.time_budget, ctx.opts.probe_budget)
    for name in names:
        t0 = time.perf_counter()
        what = run_task(ctx, name)
        rows.append((name, time.perf_counter() - t0, what))
        print(f"[{name}] {rows[-1][1]:.1f}s {what}", file=sys.stderr)


def final_record(ctx: Any, started: float, exc: BaseException | None) -> dict[str, Any]:
    """run.json at the end: the full record with status complete, interrupted or failed (then also the error)."""
    status = "complete" if exc is None else "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    try:
        record = ctx.record(time.perf_counter() - started)
    except Exception:  # a failed run may not get as far as the predictions the record lists
        if exc is None:
            raise
        record = {"command": ctx.opts.command}
    record["status"] = status
    if exc is not None and not isinstance(exc, KeyboardInterrupt):
        record["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return record


def run_task(ctx, name: str) -> str:
    """Run one task and keep its record in ctx.results; returns the files it wrote, or "skipped: why"."""
    import tasks
    from errors import Skipped

    try:
        result = tasks.get(name)(ctx)
    except Skipped as why:
        return f"skipped: {why}"
    ctx.results[name] = result
    return ", ".join(str(Path(f).relative_to(ctx.out)) if Path(f).is_relative_to(ctx.out) else str(f)
                     for f in result.files)


def print_table(rows: list[tuple[str, float, str]], total: float) -> None:
    """The closing table: each task's wall time and what it wrote."""
    print(f"\n{'task':<14} {'seconds':>8}  files")
    for name, sec, what in rows:
        print(f"{name:<14} {sec:>8.1f}  {what}")
    print(f"{'total':<14} {total:>8.1f}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 2 on bad input (one line, no traceback), 1 on an internal error, 130 when
    interrupted (Ctrl-C or SIGTERM, also while the modules import)."""
    try:
        from errors import ExplainInputError
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        import context

        args = parse_args(argv)
        return run(context.Options.from_args(args, " ".join(["python", "main.py"] + list(sys.argv[1:] if argv is None
                                                                                         else argv))))
    except ExplainInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("internal error: please report it with the traceback above", file=sys.stderr)
        return 1


def _terminate(signum: int, frame: Any) -> NoReturn:
    """SIGTERM ends the run as Ctrl-C does: files being written are dropped, finished ones stay."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
