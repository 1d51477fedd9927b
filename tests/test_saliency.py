"""Saliency family: exact gradients, IG completeness, ground-truth localisation, batching, determinism, architectures."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import metrics
import saliency as S
from conftest import make_ctx
from model import Preprocess, build_network, probe_4d_modules
from outputs import load_maps


class Tiny(nn.Module):
    """A smooth (tanh) conv net small enough for full finite differences."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


def finite_diff(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of a scalar function of x, element by element."""
    g = torch.zeros_like(x)
    for k in range(x.numel()):
        d = torch.zeros_like(x).view(-1)
        d[k] = eps
        g.view(-1)[k] = (f(x + d.view_as(x)) - f(x - d.view_as(x))) / (2 * eps)
    return g


def test_gradients_equal_finite_differences():
    torch.manual_seed(0)
    net = Tiny().double().eval()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    targets = [0, 2]
    maps = S.vanilla(net, x, targets, batch_size=2)
    course = S.vanilla_course(net, x, targets)
    with torch.no_grad():
        for i, t in enumerate(targets):
            g = finite_diff(lambda z: net(z[None])[0, t].item(), x[i])
            np.testing.assert_allclose(maps[i], g.abs().amax(0).numpy(), rtol=1e-4, atol=1e-6)
            ce = finite_diff(lambda z: nn.functional.cross_entropy(net(z[None]), torch.tensor([t])).item(), x[i]).abs()
            np.testing.assert_allclose(course[i], ((ce - ce.min()) / (ce.max() - ce.min())).numpy(), atol=1e-4)


def test_ig_completeness_at_64_steps(demo_ctx):
    maps, gaps = S.integrated_gradients(demo_ctx.model, demo_ctx.images, demo_ctx.targets(), steps=64, baseline="black",
                                        batch_size=16)
    assert maps.shape == (len(demo_ctx.images), 128, 128)
    assert gaps.mean() < 0.02 and gaps.max() < 0.05, gaps


@pytest.fixture(scope="module")
def gt_maps(demo_ctx, gt_batch) -> dict[str, np.ndarray]:
    """Every method's maps on the ground-truth subset (small sample counts: localisation, not convergence)."""
    x, _, labels, _ = gt_batch
    m = demo_ctx.model
    layer = S.default_gradcam_layer(demo_ctx.net, 128, demo_ctx.conv_layers())
    return {"vanilla": S.vanilla(m, x, labels, 8),
            "smoothgrad": S.smoothgrad(m, x, labels, n=6, sigma=0.15, seed=0, batch_size=6),
            "integrated_gradients": S.integrated_gradients(m, x, labels, steps=8, baseline="black", batch_size=9)[0],
            "gradcam": S.gradcam(m, x, labels, demo_ctx.layer(layer), 8)}


# The bar for Grad-CAM at the default layer (cnn.18, 8x8: its upsampled 16-px cells spill onto the
# clutter): >= 2.5x the mask share with a pointing game >= 95%; the pixel-resolution methods keep >= 3x.
RATIO = {"vanilla": 3.0, "smoothgrad": 3.0, "integrated_gradients": 3.0, "gradcam": 2.5}


@pytest.mark.parametrize("method", list(RATIO))
def test_map_mass_concentrates_in_the_object(gt_maps, gt_batch, method):
    masks = gt_batch[1]
    frac = np.array([metrics.mass_in_mask(np.abs(m), k) for m, k in zip(gt_maps[method], masks)])   # |map| share
    assert frac.mean() >= RATIO[method] * masks.mean(), (frac.mean(), masks.mean())


def test_gradcam_maximum_inside_the_object(demo_ctx, gt_maps, gt_batch):
    assert S.default_gradcam_layer(demo_ctx.net, 128, demo_ctx.conv_layers()) == "cnn.18"  # not the 4x4 pool cnn.19
    maps, masks = gt_maps["gradcam"], gt_batch[1]
    peak = maps.reshape(len(maps), -1).argmax(1)
    inside = masks.reshape(len(masks), -1)[np.arange(len(maps)), peak]
    assert inside.mean() >= 0.95, inside


def test_batch_equals_one_at_a_time(demo_ctx):
    m, x, t = demo_ctx.model, demo_ctx.images[:2], demo_ctx.targets()[:2]
    layer = demo_ctx.layer(S.default_gradcam_layer(demo_ctx.net, 128, demo_ctx.conv_layers()))
    methods = {
        "vanilla": lambda xs, ts, ids, bs: S.vanilla(m, xs, ts, bs),
        "smoothgrad": lambda xs, ts, ids, bs: S.smoothgrad(m, xs, ts, n=3, sigma=0.15, seed=3, batch_size=bs, keys=ids),
        "ig": lambda xs, ts, ids, bs: S.integrated_gradients(m, xs, ts, steps=4, baseline="black", batch_size=bs)[0],
        "gradcam": lambda xs, ts, ids, bs: S.gradcam(m, xs, ts, layer, bs),
    }
    for name, f in methods.items():
        batch = f(x, t, [10, 11], 2)
        for i in range(2):
            one = f(x[i:i + 1], t[i:i + 1], [10 + i], 1)[0]
            assert np.abs(batch[i] - one).max() <= 1e-4 * np.abs(one).max(), name


def test_two_runs_write_identical_arrays_and_figures(demo_data, tmp_path):
    flags = ("--images", "0,1", "--set", "smoothgrad_n=3", "--set", "ig_steps=4", "--set", "lime_samples=20",
             "--set", "occlusion_stride=52")
    written = {}
    for run in ("a", "b"):
        ctx = make_ctx(tmp_path / run, *flags)
        files = []
        for task in (S.task_saliency, S.task_smoothgrad, S.task_ig, S.task_gradcam, S.task_compare):
            files += task(ctx).files
        written[run] = {f.name: f.read_bytes() for f in files}
    assert written["a"] == written["b"]
    assert {"saliency.png", "smoothgrad.png", "integrated_gradients.png", "gradcam.png",
            "attribution_comparison.png", "vanilla.npz", "integrated_gradients.npz"} <= set(written["a"])
    arr = load_maps(tmp_path / "a" / "arrays" / "gradcam.npz")
    assert arr["maps"].shape == (2, 128, 128) and arr["maps"].dtype == np.float32
    assert list(arr["files"]) == ctx.files


def _no_hooks(net: nn.Module) -> bool:
    return all(not mod._forward_hooks for mod in net.modules())


@pytest.mark.parametrize("arch,width", [("hw3", 0.25), ("hw5ta", 0.125), ("resnet18", 1.0)])
def test_works_on_other_architectures(arch, width):
    torch.manual_seed(0)
    net = build_network(arch, 11, width, 64)
    model = Preprocess(net).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    t = np.array([1, 7])
    name = S.default_gradcam_layer(net, 64, probe_4d_modules(net, 64))
    layer = dict(net.named_modules())[name]
    maps = [S.vanilla(model, x, t), S.smoothgrad(model, x, t, n=2, sigma=0.15, seed=0, batch_size=4), S.integrated_gradients(model, x, t, steps=2, baseline="black")[0],
            S.gradcam(model, x, t, layer)]
    for m in maps:
        assert m.shape == (2, 64, 64) and m.dtype == np.float32 and np.isfinite(m).all()
    assert _no_hooks(net)
    with pytest.raises(Exception):
        S.gradcam(model, x, np.array([1, 99]), layer)  # target out of range fails inside the hooked pass
    assert _no_hooks(net)
    if arch == "resnet18":
        # the reused in-place ReLU's last call is the block output: same map as hooking the whole layer4
        assert name == "layer4.1.relu"
        np.testing.assert_allclose(maps[3], S.gradcam(model, x, t, net.layer4), rtol=1e-4, atol=1e-6)
