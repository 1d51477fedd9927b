"""The run context: resolved settings, the wrapped model, the selected images and a shared cache."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import dataset
import demo
import settings as settings_mod
from errors import Skipped, UserError
from model import Autocast, Network, Preprocess, autocast, find_module, load_weights, make_network, output_classes, \
    probe_4d_modules, read_checkpoint, sha256_file


@dataclass
class RunContext:
    """Everything a task needs; built once by main.py."""

    args: argparse.Namespace
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
    precision: str = "fp32"      # of the forward-only passes (--precision; --time-budget may switch it to bf16)
    resize: dataset.Resize = dataset.STRETCH   # how pictures become the model's input (--resize, the model's meta)
    weights: str = ""            # where the weights came from (printed once, in run.json)
    cache: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)   # numbers tasks report (into run.json)

    @property
    def net(self) -> nn.Module:
        """The user's own network (layer names refer to it)."""
        return self.model.net

    def infer_model(self) -> nn.Module:
        """The model for forward-only passes (predictions, LIME, occlusion, deletion/insertion): bf16 autocast
        under --precision bf16; gradient methods always use the fp32 `model`."""
        return self.model if self.precision == "fp32" else Autocast(self.model, self.device)

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
            self.cache["probs"] = predict(self.infer_model(), self.images, self.device, self.settings["batch_size"])
        return self.cache["probs"]

    def preds(self) -> np.ndarray:
        """Predicted classes of the selected images."""
        return self.probs().argmax(1)

    def targets(self) -> np.ndarray:
        """The class each explanation explains: --target pred|true|<id>; default true label, else predicted."""
        how = self.args.target or "auto"
        preds = self.preds()
        if how == "pred":
            return preds.copy()
        if how in ("true", "auto"):
            if how == "true" and (self.labels < 0).any():
                raise UserError("--target true: some selected images have no label (name them <label>_<n>.jpg)")
            return np.where(self.labels >= 0, self.labels, preds)
        cls = int(how)
        if not 0 <= cls < self.num_classes:
            raise UserError(f"--target {cls} out of range: the model has {self.num_classes} classes (0..{self.num_classes - 1})")
        return np.full(len(self.indices), cls)

    def layer(self, name: str) -> nn.Module:
        """A module of the user's network by name; unknown names list the valid ones."""
        return find_module(self.net, name)

    def conv_layers(self) -> list[str]:
        """Names of the user network's modules with 4-D outputs, in execution order (probe pass, cached)."""
        if "conv_layers" not in self.cache:
            self.cache["conv_layers"] = probe_4d_modules(self.net, self.input_size, self.device)
        return self.cache["conv_layers"]

    def layers_or_skip(self, what: str) -> list[str]:
        """conv_layers(); a network without a 4-D layer (and no --layer) skips the task asking, with one line."""
        layers = self.conv_layers()
        if not layers and not self.args.layer:
            raise Skipped(f"the network has no layer with a 4-D output, which {what} needs")
        return layers

    def split(self, name: str) -> dataset.ImageSet:
        """Another split of the same data (e.g. validation for the confusion matrix)."""
        return dataset.open_split(self.data, name)

    def split_predictions(self, name: str) -> dict[str, Any]:
        """Files, labels and softmax probabilities for a whole split (computed once per run, shared)."""
        key = f"split:{name}"
        if key not in self.cache:
            images = self.split(name)
            probs = predict_split(self.infer_model(), images, self.input_size, self.device, self.settings["eval_batch_size"],
                                  self.cv2_mode, self.settings["loader_workers"], self.resize)
            labels = np.array([-1 if lb is None else lb for lb in images.labels])
            self.cache[key] = {"images": images, "files": images.files, "labels": labels, "probs": probs}
        return self.cache[key]

    def eval_predictions(self) -> dict[str, Any]:
        """split_predictions of --eval-split, which must be a labelled Food-11 split (else the task is skipped)."""
        split = self.args.eval_split
        if not dataset.is_food11(self.data) or not (self.data / split).is_dir():
            raise Skipped(f"{self.data} is not a Food-11 tree with a {split}/ folder")
        pred = self.split_predictions(split)
        if len(pred["labels"]) == 0 or (pred["labels"] < 0).any():
            raise Skipped(f"{split}/ images carry no labels (<label>_<n>.jpg names)")
        return pred

    def rng(self, *keys: int | str) -> np.random.Generator:
        """A numpy generator seeded from --seed and keys (e.g. method name, image index): order-independent."""
        return np.random.default_rng([self.seed, *[_key_int(k) for k in keys]])

    def torch_generator(self, *keys: int | str) -> torch.Generator:
        """A CPU torch generator seeded from --seed and keys."""
        return torch.Generator().manual_seed(int(self.rng(*keys).integers(0, 2 ** 62)))


def _key_int(k: int | str) -> int:
    """Stable integer for a seed key (strings hashed deterministically, unlike hash())."""
    if isinstance(k, (int, np.integer)):
        return int(k)
    return int.from_bytes(str(k).encode()[:16].ljust(16, b"\0"), "little") % (2 ** 63)


def predict(model: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int) -> np.ndarray:
    """Softmax probabilities for a batch of [0,1] images, in chunks, under inference mode."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            out.append(torch.softmax(model(images[i:i + batch_size].to(device)).float(), 1).cpu())
    return torch.cat(out).numpy()


def predict_split(model: nn.Module, images: dataset.ImageSet, size: int, device: torch.device, batch_size: int,
                  cv2_mode: bool, workers: int, resize: dataset.Resize = dataset.STRETCH) -> np.ndarray:
    """Softmax probabilities for a whole split, decoding in worker processes, in listing order."""
    from tqdm import tqdm

    out = []
    loader = dataset.split_loader(images, size, batch_size, cv2_mode, workers, resize)
    with torch.inference_mode():
        for x, _ in tqdm(dataset.batches(loader), total=len(loader), desc=f"predict {images.name}",
                         unit="batch", leave=False, disable=None):
            out.append(torch.softmax(model(x.to(device).float() / 255.0).float(), 1).cpu())
    return torch.cat(out).numpy()


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
    """Parse '0.5,0.5,0.5' into three floats."""
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        vals = []
    if len(vals) != 3:
        raise UserError(f"{flag} needs three comma-separated numbers, got {text!r}")
    return vals


def check_out_dir(out: Path) -> None:
    """Create the output folder and make sure it is writable (one clear line when not)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output folder {out} is not writable: {exc.strerror or exc}") from None


def build(args: argparse.Namespace) -> RunContext:
    """Resolve settings (flags over checkpoint metadata over the model's declared meta over defaults), load model and
    images."""
    use_demo = args.data is None
    data = demo.ensure_demo_data() if use_demo else Path(args.data)
    if not data.exists():
        raise UserError(f"data path does not exist: {data}")
    ckpt = Path(args.checkpoint) if args.checkpoint else (demo.DEMO_CHECKPOINT if use_demo else None)
    state, meta, net = None, {}, None
    if ckpt is not None:
        state, meta = read_checkpoint(ckpt, args.trust_pickle)
        if isinstance(state, nn.Module):
            net, state = state, None
    arch = args.arch or meta.get("arch") or "hw3"
    arch_opts = dict(meta.get("arch_options", {})) if arch == meta.get("arch") else {}
    if args.width is not None:
        arch_opts["width"] = args.width
    names_file = dataset.read_class_names(args.class_names) if args.class_names else None
    num_classes = args.num_classes or len(names_file or meta.get("class_names") or []) or None
    # --- weights: a model file / torchvision --weights carries its own; a checkpoint loads on top; else random
    built = Network(net, {}, f"the pickled module in {ckpt}") if net is not None else \
        make_network(arch, num_classes, float(arch_opts.get("width", 1.0)), args.input_size or meta.get("input_size")
                     or 128, args.weights)
    net = built.net
    if state is not None:
        load_weights(net, state, ckpt, arch)
    if state is None and built.weights is None and not args.allow_random_weights:
        tv = "" if arch in ("hw3", "hw5ta") else f", --weights DEFAULT for torchvision's trained {arch}"
        raise UserError(f"no --checkpoint given for your data: pass --checkpoint FILE{tv} (or --allow-random-weights "
                        f"to explain an untrained network)")
    weights = (f"{built.weights}, then checkpoint {ckpt} on top" if built.weights and state is not None else
               built.weights or (f"checkpoint {ckpt}" if state is not None else
                                 "none: randomly initialised (--allow-random-weights)"))
    print(f"weights: {weights}", file=sys.stderr)
    ckpt_meta, meta = meta, {**built.meta, **meta}   # the checkpoint's metadata over the model's; flags over both
    input_size = args.input_size or meta.get("input_size") or 128
    cv2_mode = bool(args.cv2_preprocess)
    bgr = bool(args.bgr or cv2_mode or meta.get("bgr", False))
    mean = _floats(args.mean, "--mean") or meta.get("mean")
    std = _floats(args.std, "--std") or meta.get("std")
    resize = dataset.Resize(args.resize or meta.get("resize") or "stretch", meta.get("resize_size"),
                            meta.get("interpolation", "bilinear"))
    device = pick_device(args.device)
    autocast(device, args.precision or "fp32")  # an unsupported --precision fails before any work
    # channels_last measured faster here for every explainer's passes (HW3, 1 thread: forward 30 vs 44 ms/image at
    # batch 8, forward+backward 91 vs 101 ms at batch 4); inputs stay NCHW, the convolutions pick the format.
    model = Preprocess(net, mean, std, bgr).to(device).eval().to(memory_format=torch.channels_last)
    num_classes = output_classes(model, input_size, device)
    class_names = names_file or meta.get("class_names")
    if class_names is None:
        class_names = list(dataset.CLASS_NAMES) if num_classes == 11 else [f"class {i}" for i in range(num_classes)]
    elif len(class_names) != num_classes:
        if not args.num_classes:
            raise UserError(f"{len(class_names)} class names ({'--class-names' if names_file else 'the model meta'}) "
                            f"but the model returns {num_classes} logits")
        class_names = class_names[:num_classes] + [f"class {i}" for i in range(len(class_names), num_classes)]
    out = Path(args.out)
    check_out_dir(out)
    run_settings = settings_mod.resolve(device.type, args.full, args.set)
    if args.threads:
        torch.set_num_threads(args.threads)
    food11 = dataset.is_food11(data)
    split_name = (args.split or "training") if food11 else "images"
    imageset = dataset.open_split(data, split_name)
    indices = dataset.select(imageset, _image_spec(args.images), plain=not food11)
    images, masks = dataset.load_batch(imageset, indices, input_size, cv2_mode, resize)
    labels = np.array([-1 if imageset.labels[i] is None else imageset.labels[i] for i in indices])
    if (labels >= num_classes).any():
        raise UserError(f"image labels go up to {labels.max()} but the model has {num_classes} classes")
    return RunContext(args=args, model=model, device=device, arch=arch, input_size=input_size,
                      class_names=class_names, data=data, demo=use_demo, imageset=imageset, indices=indices,
                      images=images, labels=labels, masks=masks, out=out, seed=args.seed, settings=run_settings,
                      checkpoint=ckpt, checkpoint_sha256=sha256_file(ckpt) if ckpt else None,
                      checkpoint_meta=dict(ckpt_meta), cv2_mode=cv2_mode,
                      precision=args.precision or "fp32", resize=resize, weights=weights)


def _image_spec(items: list[str] | None) -> list[str] | None:
    """Flatten repeated/comma-separated --images values."""
    if not items:
        return None
    return [p.strip() for item in items for p in item.split(",") if p.strip()]

