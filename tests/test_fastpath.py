"""The fast fp32 path (BatchNorm folded into the convs): same logits and maps as eager, hooks on user layers work."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import fastpath
import filter_vis as fv
import saliency as S


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fast(demo_model) -> nn.Module:
    return fastpath.fast_fp32(demo_model)


def r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_folds_every_bn_and_keeps_names(demo_model, fast):
    folded = fastpath.folded_names(demo_model, fast)
    assert folded == [f"net.cnn.{i}" for i in (1, 5, 9, 13, 17)]
    assert [n for n, _ in fast.named_modules()] == [n for n, _ in demo_model.named_modules()]
    # the original is untouched: still BatchNorm, still trainable
    assert isinstance(demo_model.net.cnn[1], nn.BatchNorm2d) and demo_model.net.cnn[0].weight.requires_grad
    assert not fast.training


def test_logits_match_eager(demo_model, fast, gt_batch):
    x = gt_batch[0]
    with torch.inference_mode():
        a, b = demo_model(x), fast(x)
    assert (a.argmax(1) == b.argmax(1)).all()
    assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max()), float((a - b).abs().max())


def test_maps_match_eager(demo_model, fast, gt_batch):
    x, _, labels, _ = gt_batch
    x, labels = x[:6], labels[:6]
    for method in ("vanilla", "ig", "gradcam"):
        if method == "vanilla":
            a, b = (S.vanilla(m, x, labels) for m in (demo_model, fast))
        elif method == "ig":
            a, b = (S.integrated_gradients(m, x, labels, steps=16, baseline="black")[0] for m in (demo_model, fast))
        else:   # Grad-CAM's hook on the user's layer name, in each model
            a, b = (S.gradcam(m, x, labels, m.net.get_submodule("cnn.18")) for m in (demo_model, fast))
        for i in range(len(x)):
            assert r(a[i], b[i]) >= 0.9999, (method, i, r(a[i], b[i]))


def test_filter_hooks_see_the_same_activations(demo_model, fast, gt_batch):
    x = gt_batch[0][:4]
    for layer in ("cnn.2", "cnn.10", "cnn.1"):   # ReLUs, and a folded BN (now an Identity passing the same tensor)
        a, b = (fv.activation_maps(m, m.net.get_submodule(layer), x, [0, 3, 7], torch.device("cpu"), 4)
                for m in (demo_model, fast))
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))


def test_keep_leaves_a_conv_unfolded(demo_model, gt_batch):
    fast = fastpath.fast_fp32(demo_model, keep=["net.cnn.4"])
    assert isinstance(fast.net.cnn[5], nn.BatchNorm2d) and isinstance(fast.net.cnn[1], nn.Identity)
    x = gt_batch[0][:2]
    a, b = (fv.activation_maps(m, m.net.get_submodule("cnn.4"), x, [0, 1], torch.device("cpu"), 2)
            for m in (demo_model, fast))
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_resnet_and_training_stats():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5)
    for m in net.modules():   # non-trivial statistics, so a wrong fold shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    net.eval()
    fast = fastpath.fast_fp32(net)
    assert len(fastpath.folded_names(net, fast)) == 20   # every conv's BN, downsample branches included
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        a, b = net(x), fast(x)
    assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())


def test_untraceable_model_falls_back_to_sequential_scan():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:   # data-dependent control flow: torch.fx cannot trace the whole model
                x = x * 1.0
            return self.head(self.body(x).mean((2, 3)))

    torch.manual_seed(0)
    net = Branchy()
    net.body[1].running_mean.normal_(0, 0.3)
    net.eval()
    fast = fastpath.fast_fp32(net)
    assert isinstance(fast.body[1], nn.Identity)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), net(x), rtol=1e-5, atol=1e-6)


def test_fast_bf16_is_bitwise_autocast(demo_model, gt_batch):
    from model import Autocast

    fast = fastpath.fast_bf16(demo_model)
    assert next(fast.model.net.cnn[0].parameters()).dtype == torch.bfloat16
    assert demo_model.net.cnn[0].weight.dtype == torch.float32   # the original keeps fp32
    x = gt_batch[0][:4]
    with torch.inference_mode():
        assert torch.equal(fast(x), Autocast(demo_model, torch.device("cpu"))(x))


def test_entry_point_runs_the_fast_paths(demo_model, gt_batch):
    import explain
    from model import Autocast

    x, t = gt_batch[0][:2], [0, 1]
    eager = S.vanilla(demo_model, x, t, 2)
    folded = explain.attribute(demo_model, x, t, "vanilla").maps
    assert r(eager, folded) >= 0.9999 and not np.array_equal(eager, folded)   # BN folded: not eager's rounding
    import copy

    a, b = copy.deepcopy(demo_model), copy.deepcopy(demo_model)
    a.net.cnn[1].train(), b.net.cnn[1].train()   # a BatchNorm in training mode: the model runs as given
    np.testing.assert_array_equal(explain.attribute(a, x, t, "vanilla").maps, S.vanilla(b, x, t, 2))
    fast = explain.attribute(demo_model, x, t, "occlusion", precision="bf16", patch=32, stride=32).maps
    plain = explain.METHODS["occlusion"].fn(Autocast(demo_model, torch.device("cpu")), x, torch.tensor(t),
                                            batch_size=8, seed=0, keys=[0, 1], patch=32, stride=32, value=0.5).maps
    np.testing.assert_array_equal(fast, plain)   # bf16-stored weights: bitwise autocast's outputs
