"""Architectures, checkpoint formats, wrong-architecture messages, layer lookup."""
from __future__ import annotations

import pytest
import torch

import model
from errors import UserError


def test_hw3_structure_and_names():
    net = model.HW3Net()
    sd = net.state_dict()
    assert "cnn.0.weight" in sd and "fc.4.bias" in sd
    assert [sd[f"cnn.{i}.weight"].shape[0] for i in (0, 4, 8, 12, 16)] == [64, 128, 256, 512, 512]
    assert sd["fc.0.weight"].shape == (1024, 8192) and sd["fc.2.weight"].shape == (512, 1024)
    assert net(torch.zeros(2, 3, 128, 128)).shape == (2, 11)


def test_width_keeps_structure_and_is_small():
    full, small = model.HW3Net(), model.HW3Net(width=0.25)
    assert list(full.state_dict()) == list(small.state_dict())
    n = sum(p.numel() for p in small.parameters())
    assert 0.7e6 < n < 0.9e6


def test_hw5ta_structure():
    net = model.HW5TANet()
    sd = net.state_dict()
    assert sd["cnn.0.weight"].shape == (128, 3, 3, 3)
    assert isinstance(net.cnn[15], torch.nn.ReLU) and isinstance(net.fc[2], torch.nn.Dropout)
    assert sd["fc.3.weight"].shape == (11, 1024)


def _save(obj, path):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("wrap", ["bare", "model_state_dict", "state_dict", "model", "dataparallel"])
def test_checkpoint_formats_load(tmp_path, wrap):
    net = model.HW3Net(width=0.125)
    sd = net.state_dict()
    if wrap == "dataparallel":
        obj = {"module." + k: v for k, v in sd.items()}
    elif wrap == "bare":
        obj = sd
    else:
        obj = {wrap: sd, "epoch": 3}
    state, meta = model.read_checkpoint(_save(obj, tmp_path / "c.pt"))
    other = model.HW3Net(width=0.125)
    model.load_weights(other, state, "c.pt", "hw3")
    x = torch.rand(1, 3, 128, 128)
    assert torch.equal(net.eval()(x), other.eval()(x))


def test_pickled_module_needs_trust(tmp_path):
    path = _save(model.HW3Net(width=0.125), tmp_path / "whole.pt")
    with pytest.raises(UserError, match="--trust-pickle"):
        model.read_checkpoint(path)
    obj, _ = model.read_checkpoint(path, trust_pickle=True)
    assert isinstance(obj, model.HW3Net)


def test_wrong_architecture_names_keys_and_suggests_arch(tmp_path):
    state, _ = model.read_checkpoint(_save({"model_state_dict": model.HW5TANet(width=0.125).state_dict()},
                                           tmp_path / "h.pt"))
    with pytest.raises(UserError) as err:
        model.load_weights(model.HW3Net(), state, "h.pt", "hw3")
    msg = str(err.value)
    assert "h.pt" in msg and "unexpected keys" in msg and "--arch hw5ta --width 0.125" in msg and "\n" not in msg


def test_garbage_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pt"):
        model.read_checkpoint(bad)
    with pytest.raises(UserError, match="not found"):
        model.read_checkpoint(tmp_path / "missing.pt")


def test_torchvision_and_file_archs(tmp_path):
    net = model.build_network("resnet18", num_classes=11)
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 11)
    f = tmp_path / "mine.py"
    f.write_text("import torch\ndef make(num_classes=11):\n"
                 "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),"
                 " torch.nn.Flatten(), torch.nn.Linear(4, num_classes))\n")
    mine = model.build_network(f"{f}:make", num_classes=5)
    assert mine(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(UserError, match="unknown --arch"):
        model.build_network("nonsense_net")
    with pytest.raises(UserError, match="has no 'other'"):
        model.build_network(f"{f}:other")


def network_input_of_red(mean: list[float], std: list[float], bgr: bool) -> torch.Tensor:
    """The per-channel values the wrapped network sees for a pure-red RGB pixel."""
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x.mean((2, 3))

    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # pure red in RGB
    model.Preprocess(Spy(), mean=mean, std=std, bgr=bgr)(x)
    return seen["x"][0, :, 0, 0]


def test_preprocess_flips_and_normalises():
    seen = network_input_of_red([0.5, 0.5, 0.5], [0.25, 0.25, 0.25], bgr=True)
    assert torch.allclose(seen, torch.tensor([-2.0, -2.0, 2.0]))  # red is the last channel in BGR


def test_layer_lookup_and_probe():
    net = model.HW3Net(width=0.125)
    assert model.find_module(net, "cnn.14") is net.cnn[14]
    with pytest.raises(UserError, match="valid layer names: cnn, cnn.0"):
        model.find_module(net, "cnn.99")
    order = model.probe_4d_modules(net, 128)
    assert order[0] == "cnn.0" and order[-1] == "cnn.19"
    res = model.probe_4d_modules(model.build_network("resnet18", 11), 64)
    assert res[-1] == "layer4.1.relu"  # the reused in-place ReLU counts at its last call


def test_bf16_forward_passes_match_fp32_and_leave_gradients_alone(demo_data, tmp_path):
    """--precision bf16: forward-only passes autocast (same predictions, probabilities close), gradients stay fp32."""
    from conftest import make_ctx

    import context

    ctx32, ctx16 = make_ctx(tmp_path / "a", "--precision", "fp32"), make_ctx(tmp_path / "b", "--precision", "bf16")
    assert ctx32.infer_model() is ctx32.model and isinstance(ctx16.infer_model(), model.Autocast)
    cpu = torch.device("cpu")   # the default: bf16 exactly where the CPU computes it natively
    assert context.resolve_precision(None, cpu) == ("bf16" if model.native_bf16(cpu) else "fp32")
    p32, p16 = ctx32.probs(), ctx16.probs()
    assert p16.dtype == p32.dtype and (p16.argmax(1) == p32.argmax(1)).all() and abs(p16 - p32).max() < 0.05
    with torch.inference_mode():
        assert ctx16.infer_model()(ctx16.images[:1]).dtype == torch.float32
    x = ctx16.images[:1].clone().requires_grad_(True)
    ctx16.model(x)[0, 0].backward()
    assert x.grad.dtype == torch.float32


def test_bf16_on_an_unsupported_device_is_one_line(demo_data, tmp_path):
    with pytest.raises(UserError, match="bf16"):
        model.Autocast(torch.nn.Identity(), torch.device("meta"))


def test_bgr_with_rgb_statistics_normalises_red_with_the_first_value():
    """--bgr --mean a,b,c --std ...: statistics in RGB order (the help's example), applied before the flip."""
    seen = network_input_of_red([0.1, 0.2, 0.3], [0.5, 0.25, 0.125], bgr=True)
    # BGR order for the network: blue (0 - 0.3) / 0.125, green (0 - 0.2) / 0.25, red (1 - 0.1) / 0.5
    assert torch.allclose(seen, torch.tensor([-2.4, -0.8, 1.8]))


def test_model_file_meta_and_num_classes(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch\n"
                 "def fixed():\n    return torch.nn.Linear(3, 7), {'input_size': 32, 'bgr': True}\n"
                 "def needs(num_classes):\n    return torch.nn.Linear(3, num_classes)\n"
                 "def bad():\n    return torch.nn.Linear(3, 7), {'bgr': 'yes'}\n"
                 "def broken():\n    raise RuntimeError('no GPU here')\n")
    built = model.make_network(f"{f}:fixed")
    assert built.meta == {"input_size": 32, "bgr": True} and built.weights == f"the model file {f}:fixed"
    assert model.make_network(f"{f}:needs").net.out_features == 11          # required and not given: Food-11's
    assert model.make_network(f"{f}:needs", num_classes=4).net.out_features == 4
    with pytest.raises(UserError, match="bgr must be bool"):
        model.make_network(f"{f}:bad")
    with pytest.raises(UserError, match="broken\\(\\) failed: RuntimeError: no GPU here"):
        model.make_network(f"{f}:broken")
    with pytest.raises(UserError, match="not a torchvision model"):
        model.make_network("hw3", weights="DEFAULT")
    assert model.make_network("resnet18").weights is None   # built by name: random until a checkpoint loads
