"""Occlusion maps: the array file format, the coverage arithmetic, and the peak on the object."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import occlusion as oc
from conftest import make_ctx
from outputs import load_maps


class _Spot(nn.Module):
    """Toy 2-class model: class 0's logit is the brightness of a fixed 8x8 spot (occlusion must find it)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 20 * (x[:, :, 40:48, 8:16].mean((1, 2, 3)) - 0.5) + self.w
        return torch.stack([s, -s], 1)


def test_patch_starts_cover_the_border():
    assert oc.patch_starts(128, 24, 12) == list(range(0, 105, 12)) + [104]
    assert oc.patch_starts(32, 16, 16) == [0, 16]
    cov = oc.coverage(10, 4, oc.patch_starts(10, 4, 3))
    assert (cov.sum(0) >= 1).all() and (cov.sum(1) == 4).all()


def test_toy_model_peak_on_the_spot():
    x = torch.ones(1, 3, 64, 64)
    maps = oc.occlusion(_Spot(), x, np.array([0]), patch=8, stride=4, value=0.5, batch_size=7)
    assert maps.shape == (1, 64, 64) and maps.dtype == np.float32
    y, x_ = np.unravel_index(maps[0].argmax(), maps[0].shape)
    assert 40 <= y < 48 and 8 <= x_ < 16
    assert abs(maps[0, 0, 63]) < 1e-6       # far from the spot nothing changes
    # batch size does not change the result
    np.testing.assert_allclose(oc.occlusion(_Spot(), x, np.array([0]), patch=8, stride=4, value=0.5, batch_size=64), maps,
                               atol=1e-6)


def test_largest_drop_inside_the_object(gt_batch, demo_model):
    images, masks, labels, _ = gt_batch
    maps = oc.occlusion(demo_model, images, labels, patch=24, stride=16, value=0.5, batch_size=32)
    peak = maps.reshape(len(maps), -1).argmax(1)
    inside = masks.reshape(len(masks), -1)[np.arange(len(peak)), peak]
    assert inside.mean() >= 0.8, inside


def test_task_writes_design_array(tmp_path):
    ctx = make_ctx(tmp_path, "--images", "0,1", "--set", "occlusion_stride=24")
    files = oc.task_occlusion(ctx).files
    assert tmp_path / "occlusion.png" in files
    z = load_maps(tmp_path / "arrays" / "occlusion.npz")
    assert set(z) == {"maps", "files", "targets", "preds"}
    assert z["maps"].dtype == np.float32 and z["maps"].shape == (2, ctx.input_size, ctx.input_size)
    assert list(z["files"]) == ctx.files
    np.testing.assert_array_equal(z["targets"], ctx.targets())
    np.testing.assert_array_equal(z["preds"], ctx.preds())
    assert np.isfinite(z["maps"]).all() and z["maps"].max() <= 1 and z["maps"].min() >= -1
