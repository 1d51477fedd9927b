"""Model architectures, checkpoint loading and the [0,1]-RGB preprocessing wrapper."""
from __future__ import annotations

import hashlib
import importlib.util
import pickle
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager

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


def build_network(arch: str, num_classes: int = 11, width: float = 1.0, input_size: int = 128) -> nn.Module:
    """Build the user's network: hw3, hw5ta, any torchvision classifier name, or path/to/file.py:callable."""
    if arch == "hw3":
        return HW3Net(num_classes, width, input_size)
    if arch == "hw5ta":
        return HW5TANet(num_classes, width, input_size)
    if ":" in arch and arch.split(":", 1)[0].endswith(".py"):
        return _from_file(arch, num_classes)
    import torchvision.models as tvm

    try:
        ctor = tvm.get_model_builder(arch)
    except ValueError:
        raise UserError(f"unknown --arch {arch!r}: use hw3, hw5ta, a torchvision model name (e.g. resnet18) "
                        f"or path/to/file.py:callable") from None
    return ctor(weights=None, num_classes=num_classes)


def _from_file(spec: str, num_classes: int) -> nn.Module:
    """Load `file.py:callable` and call it (with num_classes when it accepts it)."""
    path, name = spec.rsplit(":", 1)
    if not Path(path).is_file():
        raise UserError(f"--arch {spec}: no such file {path}")
    mod_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report it in one line
        raise UserError(f"--arch {spec}: importing {path} failed: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise UserError(f"--arch {spec}: {path} has no {name!r}")
    try:
        net = fn(num_classes=num_classes)
    except TypeError:
        net = fn()
    if not isinstance(net, nn.Module):
        raise UserError(f"--arch {spec}: {name}() returned {type(net).__name__}, not a torch.nn.Module")
    return net


class Preprocess(nn.Module):
    """Wraps the user's network so that every explainer feeds plain [0,1] RGB images.

    Channel flip (for BGR-trained models) and mean/std normalisation happen inside forward.
    """

    def __init__(self, net: nn.Module, mean: list[float] | None = None, std: list[float] | None = None,
                 bgr: bool = False):
        super().__init__()
        self.net = net
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean or [0.0, 0.0, 0.0]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std or [1.0, 1.0, 1.0]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return logits_of(self.net((x - self.mean) / self.std))


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
