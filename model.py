"""Model architectures, checkpoint loading and the [0,1]-RGB preprocessing wrapper."""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import itertools
import math
import pickle
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from errors import UserError

KNOWN_ARCHS = ("hw3", "hw5ta")


def _ch(n: int, width: float) -> int:
    """Scale a channel count by the width multiplier (at least 1)."""
    return max(1, int(round(n * width)))


class HW3Net(nn.Module):
    """The HW3 baseline CNN: five conv-BN-ReLU-maxpool blocks then three FC layers (names as the course template)."""

    def __init__(self, num_classes: int = 11, width: float = 1.0, input_size: int = 128):
        super().__init__()
        chans = [_ch(c, width) for c in (64, 128, 256, 512, 512)]
        layers: list[nn.Module] = []
        cin = 3
        for c in chans:
            layers += [nn.Conv2d(cin, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2, 2, 0)]
            cin = c
        self.cnn = nn.Sequential(*layers)
        side = input_size // 32
        self.fc = nn.Sequential(
            nn.Linear(cin * side * side, _ch(1024, width)), nn.ReLU(),
            nn.Linear(_ch(1024, width), _ch(512, width)), nn.ReLU(),
            nn.Linear(_ch(512, width), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))


class HW5TANet(nn.Module):
    """The course's HW5 demo model: stacks of conv-BN-ReLU blocks, each stack ending in a max-pool."""

    def __init__(self, num_classes: int = 11, width: float = 1.0, input_size: int = 128):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout, n in ((128, 3), (128, 3), (256, 3), (512, 1), (512, 1)):
            cout = _ch(cout, width)
            for _ in range(n):
                layers += [nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU()]
                cin = cout
            layers.append(nn.MaxPool2d(2, 2, 0))
        self.cnn = nn.Sequential(*layers)
        side = input_size // 32
        self.fc = nn.Sequential(
            nn.Linear(cin * side * side, _ch(1024, width)), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(_ch(1024, width), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.cnn(x).flatten(1))


# What a model file's `(model, meta)` may declare about the model's input (flags override every key).
META_KEYS = {"input_size": "int: the square input side in pixels",
             "mean": "three floats, RGB order", "std": "three floats, RGB order",
             "bgr": "bool: the network takes BGR input", "class_names": "list of str, one per logit",
             "resize": "'stretch' or 'crop'", "resize_size": "int: crop's shorter side before the centre crop",
             "interpolation": "'bilinear' or 'bicubic'"}


@dataclass
class Network:
    """A built network, the preprocessing it declares (META_KEYS) and where its weights came from."""

    net: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None   # where the weights came from; None: freshly initialised (random)


def build_network(arch: str, num_classes: int = 11, width: float = 1.0, input_size: int = 128) -> nn.Module:
    """Build the user's network: hw3, hw5ta, any torchvision classifier name, or path/to/file.py:callable."""
    return make_network(arch, num_classes, width, input_size).net


def make_network(arch: str, num_classes: int | None = None, width: float = 1.0, input_size: int = 128,
                 weights: str | None = None) -> Network:
    """The network for --arch (with --weights for torchvision), its declared preprocessing and its weights' origin.

    num_classes None: the model's own (a model file's default, the weights' categories), else 11 (Food-11).
    """
    if weights is not None and (arch in KNOWN_ARCHS or is_file_spec(arch)):
        raise UserError(f"--weights {weights} names torchvision weights; --arch {arch} is not a torchvision model")
    if arch == "hw3":
        return Network(HW3Net(num_classes or 11, width, input_size))
    if arch == "hw5ta":
        return Network(HW5TANet(num_classes or 11, width, input_size))
    if is_file_spec(arch):
        net, meta = _from_file(arch, num_classes)
        return Network(net, meta, f"the model file {arch}")
    import torchvision.models as tvm

    try:
        ctor = tvm.get_model_builder(arch)
    except ValueError:
        raise UserError(f"unknown --arch {arch!r}: use hw3, hw5ta, a torchvision model name (e.g. resnet18) "
                        f"or path/to/file.py:callable") from None
    if weights is None:
        return Network(ctor(weights=None, num_classes=num_classes or 11))
    w = torchvision_weights(arch, weights)
    meta = weights_meta(w)
    if num_classes is not None and num_classes != len(meta["class_names"]):
        raise UserError(f"--weights {weights}: {w} has {len(meta['class_names'])} classes, not {num_classes}")
    net = ctor(weights=None, num_classes=len(meta["class_names"]))
    state, path = load_torchvision_state(w)
    net.load_state_dict(state)
    return Network(net, meta, f"torchvision {w} ({path})")


def is_file_spec(arch: str) -> bool:
    """True for `path/to/file.py:callable`."""
    return ":" in arch and arch.rsplit(":", 1)[0].endswith(".py")


def torchvision_weights(arch: str, name: str) -> Any:
    """torchvision's weights enum member for --weights DEFAULT | IMAGENET1K_V2 | ResNet50_Weights.IMAGENET1K_V2."""
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(arch)
    except (ValueError, KeyError):
        raise UserError(f"--weights {name}: torchvision has no weights for {arch}") from None
    key = name.rsplit(".", 1)[-1]
    if key not in enum.__members__:
        raise UserError(f"--weights {name}: {arch}'s weights are {', '.join(enum.__members__)}")
    return enum[key]


def weights_meta(w: Any) -> dict[str, Any]:
    """The preprocessing and class names torchvision's weights declare (their transforms and categories)."""
    t = w.transforms()
    if not all(hasattr(t, a) for a in ("crop_size", "resize_size", "mean", "std")):
        raise UserError(f"--weights {w}: its transforms ({type(t).__name__}) are not an image classifier's")
    interp = str(getattr(t, "interpolation", "bilinear")).rsplit(".", 1)[-1].lower()
    return {"input_size": int(t.crop_size[0]), "resize": "crop", "resize_size": int(t.resize_size[0]),
            "interpolation": interp if interp in ("bilinear", "bicubic") else "bilinear",
            "mean": [float(v) for v in t.mean], "std": [float(v) for v in t.std], "bgr": False,
            "class_names": [str(c) for c in w.meta["categories"]]}


def torchvision_weights_path(w: Any) -> Path:
    """Where torch's hub cache keeps a weights file (what torchvision downloads to and reads from)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(w.url).path).name


def load_torchvision_state(w: Any) -> tuple[dict[str, torch.Tensor], Path]:
    """torchvision's state dict for weights w, from the hub cache, downloading it there when missing."""
    path = torchvision_weights_path(w)
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(w.url, str(path), progress=False)
        except Exception as exc:  # no network, proxy, disk: one line naming the file to place
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot fetch the weights of {w} ({why}): download {w.url} and place it as "
                            f"{path}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True), path
    except Exception as exc:
        raise UserError(f"cannot read the weights file {path} ({type(exc).__name__}): delete it, or download "
                        f"{w.url} again and place it there") from None


def _from_file(spec: str, num_classes: int | None) -> tuple[nn.Module, dict[str, Any]]:
    """Load `file.py:callable` and call it; returns (network, declared meta).

    num_classes is passed when given and the callable takes it (11 when it requires it and none was given).
    """
    path, name = spec.rsplit(":", 1)
    if not Path(path).is_file():
        raise UserError(f"--arch {spec}: no such file {path}")
    mod_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        with own_folder_first(Path(path).resolve().parent):
            mod_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report it in one line
        raise UserError(f"--arch {spec}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise UserError(f"--arch {spec}: {path} has no {name!r}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes = "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    required = "num_classes" in params and params["num_classes"].default is inspect.Parameter.empty
    kwargs = {"num_classes": num_classes or 11} if (takes and num_classes is not None) or required else {}
    try:
        with own_folder_first(Path(path).resolve().parent):
            out = fn(**kwargs)
    except Exception as exc:
        raise UserError(f"--arch {spec}: {name}() failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    net, meta = out if isinstance(out, tuple) and len(out) == 2 else (out, {})
    if not isinstance(net, nn.Module):
        raise UserError(f"--arch {spec}: {name}() returned {type(net).__name__}, not a torch.nn.Module "
                        f"(or a (module, meta dict) pair)")
    return net, check_meta(meta, f"--arch {spec}: {name}()'s meta")


REPO = Path(__file__).resolve().parent   # the folder of our own top-level modules


def _has_module(folder: Path, name: str) -> bool:
    """True when a folder holds a top-level module or package called `name`."""
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


@contextmanager
def own_folder_first(folder: Path) -> Iterator[None]:
    """While a model file loads (and its callable runs), its folder comes first on sys.path and our modules that
    share a name with one of that folder's leave sys.modules, so the file imports its own `model.py`; afterwards
    its modules of those names leave and ours come back."""
    names = [] if folder == REPO else [p.stem if p.suffix == ".py" else p.name for p in folder.iterdir()
                                       if p.suffix == ".py" or (p / "__init__.py").is_file()]
    clash = [n for n in names if _has_module(REPO, n)]
    ours = {n: sys.modules.pop(n) for n in clash if n in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        for name in clash:
            sys.modules.pop(name, None)
        sys.modules.update(ours)


def check_checkpoint_meta(meta: dict, path: Path) -> dict[str, Any]:
    """A checkpoint's meta, validated: the declared preprocessing (META_KEYS) and the arch our train task writes."""
    where = f"checkpoint {path} meta"
    out = {**meta, **check_meta({k: v for k, v in meta.items() if k in META_KEYS}, where)}
    if "arch" in meta and not isinstance(meta["arch"], str):
        raise UserError(f"{where}: arch must be a str (hw3, hw5ta, a torchvision name), got {meta['arch']!r}")
    options = meta.get("arch_options", {})
    width = options.get("width", 1.0) if isinstance(options, dict) else None
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise UserError(f"{where}: arch_options must be a dict with a positive number width, got {options!r}")
    return out


def check_meta(meta: Any, where: str) -> dict[str, Any]:
    """A model's declared preprocessing, validated (unknown keys and wrong types are one-line errors)."""
    if not isinstance(meta, dict):
        raise UserError(f"{where} is a {type(meta).__name__}, not a dict")
    unknown = [k for k in meta if k not in META_KEYS]
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(META_KEYS)}")

    def bad(key: str) -> UserError:
        return UserError(f"{where}: {key} must be {META_KEYS[key]}, got {meta[key]!r}")
    out = dict(meta)
    for key in ("input_size", "resize_size"):
        if key in meta:
            if isinstance(meta[key], bool) or not isinstance(meta[key], int) or meta[key] < 8:
                raise bad(key)
    for key in ("mean", "std"):
        if key in meta:
            try:
                out[key] = [float(v) for v in meta[key]]
            except (TypeError, ValueError):
                raise bad(key) from None
            if len(out[key]) != 3 or (key == "std" and min(out[key]) <= 0):
                raise bad(key)
    if "bgr" in meta and not isinstance(meta["bgr"], bool):
        raise bad("bgr")
    if "class_names" in meta:
        if not isinstance(meta["class_names"], (list, tuple)) or not all(isinstance(c, str) for c in meta["class_names"]):
            raise bad("class_names")
        out["class_names"] = list(meta["class_names"])
    if meta.get("resize", "stretch") not in ("stretch", "crop"):
        raise bad("resize")
    if meta.get("interpolation", "bilinear") not in ("bilinear", "bicubic"):
        raise bad("interpolation")
    return out


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter, else of its first buffer, else the CPU (a parameter-free model)."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def output_classes(model: nn.Module, input_size: int, device: torch.device) -> int:
    """How many logits the (wrapped) model returns, from one probe pass on a batch of two (every task batches);
    a forward that fails is one line."""
    try:
        with torch.inference_mode():
            out = model(torch.zeros(2, 3, input_size, input_size, device=device))
    except Exception as exc:  # the user's forward
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"the model's forward fails on a batch of 2 x 3 x {input_size} x {input_size} images "
                        f"(it must take batches): {type(exc).__name__}: {msg}") from None
    if out.dim() != 2 or out.shape[0] != 2:
        raise UserError(f"the model returns logits of shape {tuple(out.shape)} for two images; expected 2 x classes")
    return int(out.shape[1])


class Preprocess(nn.Module):
    """Wraps the user's network so that every explainer feeds plain [0,1] RGB images.

    Mean/std normalisation (statistics in RGB order) then the channel flip (for BGR-trained models) happen inside
    forward, so `--bgr --mean r,g,b` normalises red with r.
    """

    def __init__(self, net: nn.Module, mean: list[float] | None = None, std: list[float] | None = None,
                 bgr: bool = False):
        super().__init__()
        self.net = net
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean or [0.0, 0.0, 0.0]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std or [1.0, 1.0, 1.0]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.bgr:
            x = x.flip(1)
        return logits_of(self.net(x))


def logits_of(out: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor, the first item of a tuple/list, a dict's 'logits', or `.logits`."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out:
        return logits_of(out[0])
    if isinstance(out, dict) and "logits" in out:
        return logits_of(out["logits"])
    if isinstance(getattr(out, "logits", None), torch.Tensor):
        return out.logits
    raise TypeError(f"the model returned {type(out).__name__}; expected logits as a tensor, a tuple/list whose "
                    f"first item is the logits, a dict with 'logits', or an object with .logits")


def autocast(device: torch.device, precision: str) -> ContextManager:
    """bf16 autocast for --precision bf16 (CPU or a CUDA device that supports it), else nothing."""
    if precision == "fp32":
        return nullcontext()
    if precision != "bf16":
        raise UserError(f"--precision {precision!r}: use fp32 or bf16")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--precision bf16 is supported on cpu and cuda, not {device.type}")
    return torch.autocast(device.type, dtype=torch.bfloat16)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 in hardware (a CUDA GPU that supports it; a CPU with AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Autocast(nn.Module):
    """A model whose forward runs under bf16 autocast and returns fp32 outputs (--precision bf16's forward passes)."""

    def __init__(self, model: nn.Module, device: torch.device):
        super().__init__()
        autocast(device, "bf16")  # validate once: unsupported devices fail here with one line
        self.model, self.device_type = model, device.type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(x).float()


class Logits(nn.Module):
    """A model whose forward returns the logits tensor of any supported output form."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))


def as_classifier(model: nn.Module) -> nn.Module:
    """The model itself when it returns a tensor (our wrappers do), else a Logits wrapper around it."""
    from errors import ExplainInputError

    if not isinstance(model, nn.Module):
        raise ExplainInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model if isinstance(model, (Preprocess, Logits, Autocast)) else Logits(model)


def user_net(model: nn.Module) -> nn.Module:
    """The network whose module names layers refer to: inside our wrappers, the user's own network."""
    while isinstance(model, (Logits, Autocast, Preprocess)):
        model = model.net if isinstance(model, Preprocess) else model.model
    return model


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> tuple[Any, dict]:
    """Read a checkpoint file: returns (state_dict or whole module, metadata dict)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise UserError(f"checkpoint {path} holds pickled objects beyond tensors; if you trust the file, "
                            f"rerun with --trust-pickle") from None
        raise UserError(f"cannot read checkpoint {path}: {exc}") from None
    except Exception as exc:
        raise UserError(f"cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if isinstance(obj, nn.Module):
        return obj, {}
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    meta = obj.get("meta", {}) if isinstance(obj.get("meta"), dict) else {}
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), (dict, nn.Module)):
            obj = obj[key]
            break
    meta = check_checkpoint_meta(meta, path)
    if isinstance(obj, nn.Module):
        return obj, meta
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"checkpoint {path} has no state dict (looked at the top level and under "
                        f"model_state_dict, state_dict, model)")
    return state, meta


def _guess_arch(state: dict) -> str | None:
    """Name the built-in architecture whose keys match a state dict, if any."""
    keys = set(state)
    w = state.get("cnn.0.weight")
    for arch, base in (("hw3", 64), ("hw5ta", 128)):
        if w is None:
            break
        width = w.shape[0] / base
        net = build_network(arch, int(state[max(k for k in keys if k.startswith("fc."))].shape[0]), width)
        if set(net.state_dict()) == keys:
            return arch + (f" --width {width:g}" if width != 1 else "")
    return None


def load_weights(net: nn.Module, state: dict, path: str | Path, arch: str) -> None:
    """Load a state dict strictly; a mismatch names missing/unexpected keys and suggests an --arch."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {few([f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in shapes])}")
        guess = _guess_arch(state)
        hint = f"; it looks like --arch {guess}" if guess else "; pick the matching --arch"
        raise UserError(f"checkpoint {path} does not fit --arch {arch}: " + "; ".join(parts) + hint)
    net.load_state_dict(state)


def module_names(net: nn.Module) -> list[str]:
    """Names of every sub-module of the user's network (as in its state dict, e.g. `cnn.14`)."""
    return [n for n, _ in net.named_modules() if n]


def find_module(net: nn.Module, name: str) -> nn.Module:
    """The sub-module called `name`; an unknown name lists the valid ones."""
    mods = dict(net.named_modules())
    if name not in mods or not name:
        names = module_names(net)
        shown = ", ".join(names[:60]) + (" ..." if len(names) > 60 else "")
        raise UserError(f"unknown layer {name!r}; valid layer names: {shown}")
    return mods[name]


def probe_4d_modules(net: nn.Module, input_size: int, device: torch.device | str = "cpu") -> list[str]:
    """Names of the modules whose output is a 4-D map (spatial size > 1), in the order a probe pass runs them."""
    order: list[str] = []
    handles = []
    for name, mod in net.named_modules():
        if not name or len(list(mod.children())) > 0:
            continue

        def hook(m, inp, out, name=name):
            # 4-D with a spatial extent: a global pool's N x C x 1 x 1 output has no map to show
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                if name in order:  # a reused module (torchvision's shared ReLU) counts at its last call
                    order.remove(name)
                order.append(name)
        handles.append(mod.register_forward_hook(hook))
    try:
        was_training = net.training
        net.eval()
        with torch.no_grad():
            net(torch.zeros(1, 3, input_size, input_size, device=device))
        net.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return order


MAC_KINDS = ("dense_macs", "grouped_macs", "linear_macs")


def layer_kind(mod: nn.Module) -> str | None:
    """Which multiply-add count a layer adds to: dense conv, depthwise/grouped conv, linear; None for others."""
    if isinstance(mod, nn.Linear):
        return "linear_macs"
    if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "dense_macs" if mod.groups == 1 else "grouped_macs"
    return None


def model_cost(net: nn.Module, size: int, device: torch.device | str = "cpu") -> dict[str, int]:
    """One image's forward pass, counted by hooks in one pass at batch 1 (never timed).

    dense_macs / grouped_macs / linear_macs: multiply-adds of dense convs, depthwise or grouped convs and linear
    layers; activation_bytes: fp32 bytes each leaf module reads and writes (its tensor input and output); calls:
    leaf module calls, each a fixed overhead per batch.
    """
    cost = dict.fromkeys((*MAC_KINDS, "activation_bytes", "calls"), 0)

    def count(mod: nn.Module, inp: Any, out: Any) -> None:
        cost["calls"] += 1
        first = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
        if isinstance(out, torch.Tensor):
            cost["activation_bytes"] += 4 * (out[0].numel() + (first[0].numel() if first is not None else 0))
            kind = layer_kind(mod)
            if kind:
                per_out = mod.in_features if kind == "linear_macs" else \
                    (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
                cost[kind] += per_out * out[0].numel()

    handles = [m.register_forward_hook(count) for m in net.modules() if not any(True for _ in m.children())]
    try:
        with torch.inference_mode():
            net(torch.zeros(1, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    return {k: int(v) for k, v in cost.items()}


def model_macs(net: nn.Module, size: int, device: torch.device | str = "cpu") -> int:
    """Multiply-adds of one image's forward pass: Conv and Linear layers only (model_cost's three kinds)."""
    cost = model_cost(net, size, device)
    return sum(cost[k] for k in MAC_KINDS)
