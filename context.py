"""The run context: resolved options and settings, the wrapped model, the selected images, the maps of this run."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

import dataset
import demo
import explain
import seeds
import settings as settings_mod
from attribution import Attribution, Method
from errors import Skipped, UserError
from model import KNOWN_ARCHS, Autocast, Network, Preprocess, autocast, find_module, is_file_spec, load_weights, \
    make_network, native_bf16, model_macs, output_classes, probe_4d_modules, read_checkpoint, sha256_file


@dataclass(frozen=True)
class Options:
    """The command line, resolved: lists flattened, defaults filled in (RunContext holds this, not argparse)."""

    command: str = "python main.py"
    tasks: tuple[str, ...] = ()
    data: str | None = None
    out: str = "output"
    arch: str | None = None
    weights: str | None = None
    width: float | None = None
    num_classes: int | None = None
    checkpoint: str | None = None
    trust_pickle: bool = False
    trust_checkpoint_code: bool = False
    allow_random_weights: bool = False
    images: tuple[str, ...] | None = None
    split: str | None = None
    eval_split: str = "validation"
    input_size: int | None = None
    mean: str | None = None
    std: str | None = None
    bgr: bool = False
    resize: str | None = None
    cv2_preprocess: bool = False
    class_names: str | None = None
    target: str | None = None
    layer: tuple[str, ...] = ()
    filters: str | None = None
    classes: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    device: str | None = None
    threads: int | None = None
    seed: int = 0
    precision: str | None = None
    trust: str = "cheap"
    full: bool = False
    time_budget: float | str | None = None     # seconds, "none", or None: budget.DEFAULT_SECONDS for the default list
    probe_budget: bool = False
    set: tuple[str, ...] = ()
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    noise: float = 0.0
    limit: int | None = None
    save: str | None = None
    init: str | None = None
    schedule: str = "constant"

    @classmethod
    def from_args(cls, args: argparse.Namespace, command: str = "python main.py") -> "Options":
        """Resolve parsed arguments: comma lists split, repeatable flags as tuples."""
        known = {f.name for f in dataclasses.fields(cls)}
        raw = {k: v for k, v in vars(args).items() if k in known}
        raw["command"] = command
        raw["tasks"] = tuple(t.strip() for item in (args.task or []) for t in item.split(",") if t.strip())
        raw["images"] = tuple(i.strip() for i in args.images or [] if i.strip()) or None   # dataset.select splits
        raw["layer"] = _flat(args.layer)
        raw["set"] = tuple(args.set or ())
        return cls(**raw)

    def record(self) -> dict[str, Any]:
        """The options as run.json lists them."""
        return dataclasses.asdict(self)


def _flat(items: list[str] | None) -> tuple[str, ...]:
    """Repeated and comma-separated flag values as one tuple."""
    return tuple(p.strip() for item in (items or []) for p in item.split(",") if p.strip())


@dataclass
class RunContext:
    """Everything a task needs; built once by main.py."""

    opts: Options
    model: Preprocess            # the user's network behind [0,1]-RGB preprocessing, eval mode, on device
    device: torch.device
    arch: str
    input_size: int
    class_names: list[str]
    data: Path
    demo: bool
    imageset: dataset.ImageSet   # the listing the selected images come from
    indices: list[int]
    images: torch.Tensor         # N x 3 x S x S float in [0,1], on the CPU
    labels: np.ndarray           # N ints, -1 where unknown
    masks: np.ndarray | None     # N x S x S bool ground truth (the demo), else None
    out: Path
    seed: int
    settings: dict[str, Any]
    checkpoint: Path | None
    checkpoint_sha256: str | None
    checkpoint_meta: dict
    cv2_mode: bool
    precision: str = "fp32"      # of the forward-only passes and optimised pictures (gradients stay fp32)
    resize: dataset.Resize = dataset.STRETCH   # how pictures become the model's input (--resize, the model's meta)
    weights: str = ""            # where the weights came from (printed once, in run.json)
    cache: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)   # task name -> its TaskResult record
    maps: dict[str, Any] = field(default_factory=dict)      # method -> Attribution of the selected images
    timings: list[tuple[str, float, str]] = field(default_factory=list)   # (task, seconds, what) so far
    plan: dict[str, Any] | None = None                      # what --time-budget changed (run.json 'budget')

    @property
    def net(self) -> nn.Module:
        """The user's own network (layer names refer to it)."""
        return self.model.net

    def infer_model(self) -> nn.Module:
        """The model for forward-only sampling passes (LIME, SHAP, occlusion, deletion/insertion) and optimised pictures
        (filters, Deep Dream, class models): bf16 autocast when the run's precision is bf16; attribution gradients,
        the sanity check and predictions use the fp32 `model`."""
        return self.model if self.precision == "fp32" else Autocast(self.model, self.device)

    def attribute(self, method: str, images: torch.Tensor | None = None, targets: Any = None,
                  keys: Sequence[Any] | None = None, *, sanity: bool = False, model: nn.Module | None = None,
                  progress: str | None = None, seed: int | None = None, **options: Any) -> Attribution:
        """The one way a task gets maps: `method` with the run's settings (the sanity check's counts when asked) and
        seed (default --seed). With no images, the selected images for their targets (computed once, kept in memory)."""
        if images is None:
            if method not in self.maps:
                extra = {"extra_labels": self.preds()} if method == "lime" else {}
                self.maps[method] = self.attribute(method, self.images, self.targets(), self.files,
                                                   progress=method, **extra)
            return self.maps[method]
        m = explain.get_method(method)
        opts = explain.method_options(method, self.settings, sanity)
        if method == "gradcam":
            opts["layer"] = self.gradcam_layer()
        return explain.attribute(self.model if model is None else model, images, targets, method,
                                 batch_size=self.settings[m.batch_key], keys=keys,
                                 seed=self.seed if seed is None else seed,
                                 precision=self.precision, progress=progress, **(opts | options))

    def method_names(self) -> list[str]:
        """Every registered attribution method, in comparison-grid order."""
        return explain.method_names()

    def method(self, name: str) -> Method:
        """A registered attribution method."""
        return explain.get_method(name)

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """Softmax probabilities of any images under the run's model (fp32)."""
        return explain.predict(self.model, images, self.settings["batch_size"])

    def gradcam_layer(self) -> str:
        """--layer (its first value), else the last 4-D non-pooling module of the user's network."""
        import saliency

        if self.opts.layer:
            return self.opts.layer[0]
        return saliency.default_gradcam_layer(self.net, self.input_size, self.layers_or_skip("Grad-CAM"))

    @property
    def files(self) -> list[str]:
        """File names of the selected images."""
        return [self.imageset.files[i] for i in self.indices]

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return len(self.class_names)

    def probs(self) -> np.ndarray:
        """Softmax probabilities of the selected images (computed once, shared by every task)."""
        if "probs" not in self.cache:
            probs = self.predict(self.images)
            check_finite(self.model, self.images, probs, self.files, self.device)
            self.cache["probs"] = probs
        return self.cache["probs"]

    def preds(self) -> np.ndarray:
        """Predicted classes of the selected images."""
        return self.probs().argmax(1)

    def targets(self) -> np.ndarray:
        """The class each explanation explains: --target pred|true|<id>; default true label, else predicted."""
        how = self.opts.target or "auto"
        preds = self.preds()
        if how == "pred":
            return preds.copy()
        if how in ("true", "auto"):
            if how == "true" and (self.labels < 0).any():
                raise UserError("--target true: some selected images have no label (name them <label>_<n>.jpg)")
            return np.where(self.labels >= 0, self.labels, preds)
        cls = int(how)   # check_options: a class id
        if not 0 <= cls < self.num_classes:
            raise UserError(f"--target {cls} out of range: the model has {self.num_classes} classes (0..{self.num_classes - 1})")
        return np.full(len(self.indices), cls)

    def macs(self) -> int:
        """Multiply-adds of one image's forward pass (Conv/Linear hooks, one probe pass, cached)."""
        if "macs" not in self.cache:
            self.cache["macs"] = model_macs(self.net, self.input_size, self.device)
        return self.cache["macs"]

    def layer(self, name: str) -> nn.Module:
        """A module of the user's network by name; unknown names list the valid ones."""
        return find_module(self.net, name)

    def conv_layers(self) -> list[str]:
        """Names of the user network's modules with 4-D outputs, in execution order (probe pass, cached)."""
        if "conv_layers" not in self.cache:
            self.cache["conv_layers"] = probe_4d_modules(self.net, self.input_size, self.device)
        return self.cache["conv_layers"]

    def layer_problem(self, what: str) -> str | None:
        """Why a task that needs a 4-D layer (`what`) cannot run on this network, or None when it can."""
        if not self.opts.layer and not self.conv_layers():
            return f"the network has no layer with a 4-D output, which {what} needs"
        return None

    def layers_or_skip(self, what: str) -> list[str]:
        """conv_layers(); a network without a 4-D layer (and no --layer) skips the task asking, with one line."""
        why = self.layer_problem(what)
        if why:
            raise Skipped(why)
        return self.conv_layers()

    def split(self, name: str) -> dataset.ImageSet:
        """Another split of the same data (e.g. validation for the confusion matrix)."""
        return dataset.open_split(self.data, name)

    def split_predictions(self, name: str) -> dict[str, Any]:
        """Files, labels and softmax probabilities for a whole split (computed once per run, shared)."""
        key = f"split:{name}"
        if key not in self.cache:
            images = self.split(name)
            bf16 = self.infer_model() if self.precision == "bf16" else None
            probs, rechecked = predict_split(self.model, images, self.input_size, self.device,
                                             self.settings["eval_batch_size"], self.cv2_mode,
                                             self.settings["loader_workers"], self.resize, bf16)
            labels = np.array([-1 if lb is None else lb for lb in images.labels])
            bad = np.flatnonzero(~np.isfinite(probs).all(1))
            if len(bad):
                check_finite(self.model, dataset.load_batch(images, [int(bad[0])], self.input_size, self.cv2_mode,
                                                            self.resize)[0], probs[bad[:1]],
                             [f"{name}/{images.files[bad[0]]}"], self.device)
            self.cache[key] = {"images": images, "files": images.files, "labels": labels, "probs": probs,
                               "rechecked": rechecked}
        return self.cache[key]

    def eval_problem(self) -> str | None:
        """Why --eval-split cannot serve the whole-split tasks (not a labelled Food-11 split), or None when it can."""
        split = self.opts.eval_split
        if not dataset.is_food11(self.data):
            return f"{self.data} is not a Food-11 tree (training/, validation/, testing/)"
        if not (self.data / split).is_dir():
            return f"{self.data} has no {split}/ folder (--eval-split)"
        if not self.split(split).labelled:
            return f"{split}/ images carry no labels (<label>_<n>.jpg names)"
        return None

    def eval_predictions(self) -> dict[str, Any]:
        """split_predictions of --eval-split, which must be a labelled Food-11 split (else the task is skipped)."""
        why = self.eval_problem()
        if why:
            raise Skipped(why)
        return self.split_predictions(self.opts.eval_split)

    def rng(self, *keys: int | str) -> np.random.Generator:
        """A numpy generator seeded from --seed and keys (e.g. method name, image file): order-independent."""
        return seeds.rng(self.seed, *keys)

    def torch_generator(self, *keys: int | str) -> torch.Generator:
        """A CPU torch generator seeded from --seed and keys."""
        return torch.Generator().manual_seed(seeds.seed_int(self.seed, *keys))

    def record(self, total: float) -> dict[str, Any]:
        """What run.json holds: options and settings used, versions, seeds, checkpoint, timings, task records."""
        import platform

        return {
            "command": self.opts.command,
            "arguments": self.opts.record(),
            "arch": self.arch,
            "input_size": self.input_size,
            "class_names": self.class_names,
            "data": str(self.data),
            "demo": self.demo,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint_meta": self.checkpoint_meta,
            "weights": self.weights,
            "preprocess": {"bgr": self.model.bgr, "cv2": self.cv2_mode, "mean": self.model.mean.flatten().tolist(),
                           "std": self.model.std.flatten().tolist(), "resize": self.resize.describe(self.input_size)},
            "device": str(self.device),
            "precision": self.precision,
            "torch_threads": torch.get_num_threads(),
            "seed": self.seed,
            "settings": self.settings,
            "budget": self.plan,
            "images": [{"file": f, "index": i, "label": int(lb), "pred": int(p), "target": int(t)}
                       for f, i, lb, p, t in zip(self.files, self.indices, self.labels, self.preds(),
                                                 self.targets())],
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": np.__version__},
            "timings": {name: round(sec, 3) for name, sec, _ in self.timings},
            "tasks": {name: what for name, _, what in self.timings},
            "files": {name: [str(Path(f).relative_to(self.out)) if Path(f).is_relative_to(self.out) else str(f)
                             for f in res.files] for name, res in self.results.items()},
            "total_seconds": round(total, 3),
            "results": {name: res.record() for name, res in self.results.items()},
        }


def predict_split(model: nn.Module, images: dataset.ImageSet, size: int, device: torch.device, batch_size: int,
                  cv2_mode: bool, workers: int, resize: dataset.Resize = dataset.STRETCH,
                  bf16_model: nn.Module | None = None) -> tuple[np.ndarray, int]:
    """Softmax probabilities for a whole split (decoding in worker processes, in listing order), and how many images
    were re-checked in fp32. With a bf16 model the pass runs in bf16 and every image whose top-2 margin lies within
    the measured bf16 error bound is re-run in fp32 (exact.recheck), so the predictions are fp32's."""
    import exact
    from tqdm import tqdm

    out, rechecked = [], 0
    loader = dataset.split_loader(images, size, batch_size, cv2_mode, workers, resize)
    with torch.inference_mode():
        for x, _ in tqdm(dataset.batches(loader), total=len(loader), desc=f"predict {images.name}",
                         unit="batch", leave=False, disable=None):
            x = x.to(device).float() / 255.0
            if bf16_model is None:
                out.append(torch.softmax(model(x).float(), 1).cpu())
                continue
            checked = exact.recheck(model, bf16_model, x)
            out.append(checked.probs)
            rechecked += int(checked.rechecked.sum())
    return torch.cat(out).numpy(), rechecked


def pick_device(name: str | None) -> torch.device:
    """--device, or CUDA when available, else CPU."""
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise UserError(f"unknown --device {name!r} (use cpu, cuda or cuda:N)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _floats(text: str | None, flag: str) -> list[float] | None:
    """Parse '0.5,0.5,0.5' into three finite floats (positive ones for --std)."""
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        vals = []
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise UserError(f"{flag} needs three comma-separated numbers, got {text!r}")
    if flag == "--std" and min(vals) <= 0:
        raise UserError(f"{flag} {text}: each std must be positive (the model divides by it)")
    return vals


# Tasks that read a 4-D (convolutional) layer: Grad-CAM maps (also in the comparison, trust, where and audit),
# filter visualisation and Deep Dream.
CONV_TASKS = ("gradcam", "filters", "deepdream", "compare", "trust", "where", "audit")
# Tasks that read the labelled evaluation split.
EVAL_TASKS = ("confusion", "lime_classes", "trust", "where", "audit")


def _at_least(value: float | None, low: float, flag: str, what: str) -> None:
    """A numeric flag is None or at least `low` (and finite); else one line naming the flag."""
    if value is not None and not (math.isfinite(value) and value >= low):
        raise UserError(f"{flag} {value}: {what}")


def check_options(opts: Options, names: list[str]) -> None:
    """Every flag that needs no model or data, checked before any work (one line naming the flag when wrong)."""
    _at_least(opts.seed, 0, "--seed", "use a whole number >= 0")
    _at_least(opts.threads, 1, "--threads", "use at least 1 thread")
    _at_least(opts.num_classes, 2, "--num-classes", "an explanation compares classes: use at least 2")
    _at_least(opts.input_size, 8, "--input-size", "use the model's input side in pixels (at least 8)")
    _at_least(opts.width, 1e-6, "--width", "use a positive channel width multiplier, e.g. 0.25 or 1")
    target = opts.target
    if target is not None and target not in ("pred", "true") and not target.isdigit():
        raise UserError(f"--target {target!r}: use pred, true or a class id (0, 1, ...)")
    for flag, split in (("--split", opts.split), ("--eval-split", opts.eval_split)):
        if split is not None and split not in dataset.SPLITS:
            raise UserError(f"{flag} {split!r}: use one of {', '.join(dataset.SPLITS)} (the folders of a Food-11 tree)")
    _floats(opts.mean, "--mean")
    _floats(opts.std, "--std")
    settings_mod.resolve("cpu", opts.full, list(opts.set), trust_full=opts.trust == "full")
    if "train" in names:
        _at_least(opts.epochs, 1, "--epochs", "train for at least 1 epoch")
        _at_least(opts.batch_size, 1, "--batch-size", "use at least 1 image a batch")
        _at_least(opts.limit, 1, "--limit", "keep at least 1 image per class")
        _at_least(opts.lr, 1e-12, "--lr", "use a positive learning rate")
        _at_least(opts.noise, 0, "--noise", "use a noise std >= 0")
    if opts.data is not None:
        check_out_not_read(Path(opts.out), Path(opts.data), opts)


def check_out_not_read(out: Path, data: Path, opts: Options) -> None:
    """--out must not be a folder whose images the run reads: the next run would explain this run's figures."""
    read = [data]
    if dataset.is_food11(data):
        read += [data / (opts.split or "training"), data / opts.eval_split]
    target = out.resolve()
    hit = next((d for d in read if d.resolve() == target), None)
    if hit is not None:
        raise UserError(f"--out {out}: this run reads images from {hit} (--data {data}), so the next run would "
                        f"explain these figures; write them to another folder")


def check_finite(model: nn.Module, images: torch.Tensor, probs: np.ndarray, files: list[str],
                 device: torch.device) -> None:
    """Stop with one line when the model's output for an image is NaN or infinite, naming the image and where it
    first went non-finite (the normalised input, a layer, or the output)."""
    bad = np.flatnonzero(~np.isfinite(probs).all(1))
    if not len(bad):
        return
    i = int(bad[0])
    where = first_nonfinite(model, images[i:i + 1].to(device))
    raise UserError(f"the model's output for {files[i]} is not finite (NaN or inf), first at {where}: a diverged "
                    f"checkpoint, or a --std/--mean that divides by zero; {len(bad)} of {len(files)} images affected")


def first_nonfinite(model: Preprocess, x: torch.Tensor) -> str:
    """Where a forward pass first produces NaN or inf: 'the normalised input', 'layer NAME' or 'the output'."""
    if not torch.isfinite((x - model.mean) / model.std).all():
        return "the normalised input (--std / --mean or the model's meta)"
    found: list[str] = []
    handles = []
    for name, mod in model.net.named_modules():
        def hook(m: nn.Module, inp: Any, out: Any, name: str = name) -> None:
            if not found and isinstance(out, torch.Tensor) and not torch.isfinite(out).all():
                found.append(name)
        if name and not list(mod.children()):
            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return f"layer {found[0]}" if found else "the output (logits)"


def validate(ctx: RunContext, names: list[str]) -> None:
    """The checks that need the model and the images, all before the first task: layer names and kinds, filters,
    classes, the target, labels against the class count, and finite model outputs."""
    import filter_vis
    from hooks import Tap

    layers = [filter_vis.resolve_layer(ctx.net, name) for name in ctx.opts.layer]
    needs_conv = [t for t in names if t in CONV_TASKS]
    if layers and needs_conv:
        conv = ctx.conv_layers()
        for given, name in zip(ctx.opts.layer, layers):
            if name not in conv:
                raise UserError(f"--layer {given}: its output is not a feature map (N x C x H x W), which "
                                f"{needs_conv[0]} needs; layers with one: {', '.join(conv) or 'none'}")
    if ctx.opts.filters and "filters" in names and ctx.layer_problem("filters") is None:
        for name in layers or [filter_vis.default_layer(ctx.arch, ctx.net, ctx.conv_layers())]:
            with torch.no_grad(), Tap(ctx.layer(name), stop=True) as tap:
                channels = tap.run(ctx.model, ctx.images[:1].to(ctx.device)).shape[1]
            filter_vis.parse_filters(ctx.opts.filters, channels, 1)
    if ctx.opts.classes:
        settings_mod.parse_ids(ctx.opts.classes, "--classes", ctx.num_classes,
                               f"the model has {ctx.num_classes} classes")
    ctx.targets()   # the target's range, and the selected images' outputs are finite
    if any(t in EVAL_TASKS for t in names) and ctx.eval_problem() is None:
        check_labels(ctx.split(ctx.opts.eval_split), ctx.num_classes)


def check_labels(images: dataset.ImageSet, num_classes: int) -> None:
    """Every label read from a file name is a class of the model."""
    for name, label in zip(images.files, images.labels):
        if label is not None and label >= num_classes:
            raise UserError(f"image {images.name}/{name} has label {label} but the model has {num_classes} classes "
                            f"(labels 0..{num_classes - 1})")


def check_out_dir(out: Path) -> None:
    """Create the output folder and make sure it is writable (one clear line when not)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output folder {out} is not writable: {exc.strerror or exc}") from None


def resolve_precision(asked: str | None, device: torch.device) -> str:
    """--precision, else bf16 where the device computes it natively (AVX-512 BF16 / AMX CPUs, bf16 GPUs), else fp32."""
    if asked is not None:
        autocast(device, asked)  # an unsupported --precision fails before any work
        return asked
    return "bf16" if native_bf16(device) else "fp32"


def build(opts: Options) -> RunContext:
    """Resolve settings (flags over checkpoint metadata over the model's declared meta over defaults), load model and
    images."""
    use_demo = opts.data is None
    data = demo.ensure_demo_data() if use_demo else Path(opts.data)
    if not data.exists():
        raise UserError(f"data path does not exist: {data}")
    ckpt = Path(opts.checkpoint) if opts.checkpoint else (demo.DEMO_CHECKPOINT if use_demo else None)
    state, meta, net = None, {}, None
    if ckpt is not None:
        state, meta = read_checkpoint(ckpt, opts.trust_pickle)
        if isinstance(state, nn.Module):
            net, state = state, None
    arch = opts.arch or meta.get("arch") or "hw3"
    if not opts.arch and is_file_spec(arch) and not opts.trust_checkpoint_code:
        raise UserError(f"checkpoint {ckpt} names the model file {arch.rsplit(':', 1)[0]} ({arch}); code runs only "
                        f"when you name it: pass --arch {arch}, or --trust-checkpoint-code if you trust that file")
    if arch in KNOWN_ARCHS and (opts.input_size or 128) < 32:
        raise UserError(f"--input-size {opts.input_size}: {arch} pools the image 5 times by 2, so use at least 32 "
                        f"pixels (its checkpoints are trained at 128)")
    arch_opts = dict(meta.get("arch_options", {})) if arch == meta.get("arch") else {}
    if opts.width is not None:
        arch_opts["width"] = opts.width
    names_file = dataset.read_class_names(opts.class_names) if opts.class_names else None
    num_classes = opts.num_classes or len(names_file or meta.get("class_names") or []) or None
    # --- weights: a model file / torchvision --weights carries its own; a checkpoint loads on top; else random
    if net is not None:
        built = Network(net, {}, f"the pickled module in {ckpt}")
    else:
        with torch.random.fork_rng(devices=[]):   # random initial weights are seeded too (--seed)
            torch.manual_seed(opts.seed)
            built = make_network(arch, num_classes, float(arch_opts.get("width", 1.0)),
                                 opts.input_size or meta.get("input_size") or 128, opts.weights)
    net = built.net
    if state is not None:
        load_weights(net, state, ckpt, arch)
    if state is None and built.weights is None and not opts.allow_random_weights:
        tv = "" if arch in ("hw3", "hw5ta") else f", --weights DEFAULT for torchvision's trained {arch}"
        raise UserError(f"no --checkpoint given for your data: pass --checkpoint FILE{tv} (or --allow-random-weights "
                        f"to explain an untrained network)")
    weights = (f"{built.weights}, then checkpoint {ckpt} on top" if built.weights and state is not None else
               built.weights or (f"checkpoint {ckpt}" if state is not None else
                                 "none: randomly initialised (--allow-random-weights)"))
    print(f"weights: {weights}", file=sys.stderr)
    ckpt_meta, meta = meta, {**built.meta, **meta}   # the checkpoint's metadata over the model's; flags over both
    input_size = opts.input_size or meta.get("input_size") or 128
    cv2_mode = bool(opts.cv2_preprocess)
    bgr = bool(opts.bgr or cv2_mode or meta.get("bgr", False))
    mean = _floats(opts.mean, "--mean") or meta.get("mean")
    std = _floats(opts.std, "--std") or meta.get("std")
    resize = dataset.Resize(opts.resize or meta.get("resize") or "stretch", meta.get("resize_size"),
                            meta.get("interpolation", "bilinear"))
    device = pick_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    # channels_last measured faster here for every explainer's passes (HW3, 1 thread: forward 30 vs 44 ms/image at
    # batch 8, forward+backward 91 vs 101 ms at batch 4); inputs stay NCHW, the convolutions pick the format.
    model = Preprocess(net, mean, std, bgr).to(device).eval().to(memory_format=torch.channels_last)
    num_classes = output_classes(model, input_size, device)
    if num_classes < 2:
        raise UserError(f"the model returns {num_classes} logit per image: explanations compare classes, so the "
                        f"model needs at least 2 outputs")
    class_names = names_file or meta.get("class_names")
    if class_names is None:
        class_names = list(dataset.CLASS_NAMES) if num_classes == 11 else [f"class {i}" for i in range(num_classes)]
    elif len(class_names) != num_classes:
        if not opts.num_classes:
            raise UserError(f"{len(class_names)} class names ({'--class-names' if names_file else 'the model meta'}) "
                            f"but the model returns {num_classes} logits")
        class_names = class_names[:num_classes] + [f"class {i}" for i in range(len(class_names), num_classes)]
    out = Path(opts.out)
    check_out_dir(out)
    run_settings = settings_mod.resolve(device.type, opts.full, list(opts.set), trust_full=opts.trust == "full")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    food11 = dataset.is_food11(data)
    split_name = (opts.split or "training") if food11 else "images"
    imageset = dataset.open_split(data, split_name)
    indices = dataset.select(imageset, list(opts.images) if opts.images else None, plain=not food11)
    images, masks = dataset.load_batch(imageset, indices, input_size, cv2_mode, resize)
    labels = np.array([-1 if imageset.labels[i] is None else imageset.labels[i] for i in indices])
    check_labels(dataset.ImageSet(imageset.name, [imageset.paths[i] for i in indices], list(labels)), num_classes)
    return RunContext(opts=opts, model=model, device=device, arch=arch, input_size=input_size,
                      class_names=class_names, data=data, demo=use_demo, imageset=imageset, indices=indices,
                      images=images, labels=labels, masks=masks, out=out, seed=opts.seed, settings=run_settings,
                      checkpoint=ckpt, checkpoint_sha256=sha256_file(ckpt) if ckpt else None,
                      checkpoint_meta=dict(ckpt_meta), cv2_mode=cv2_mode, precision=precision, resize=resize,
                      weights=weights)

