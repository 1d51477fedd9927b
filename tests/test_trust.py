"""The ROAD imputer, removal order and fill, saturation, paired comparisons against random, and seed stability."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.transform import resize
from torch import nn

import dataset
import explain
import metrics
import road
import trust


def _blob_mask(rng: np.random.Generator, frac: float, size: int = 128) -> np.ndarray:
    """A smooth random field's top `frac` share: large connected holes, as a map's most relevant pixels."""
    field = resize(rng.random((8, 8)), (size, size), order=1)
    return field >= np.quantile(field, 1 - frac)


def _photos(demo_data) -> list[np.ndarray]:
    """3 x 128 x 128 float64 images: two demo validation images and three skimage.data photos."""
    val = dataset.open_split(demo_data, "validation")
    demo, _ = dataset.load_batch(val, [val.files.index(f) for f in ("6_0.jpg", "1_0.jpg")], 128)
    photos = [resize(img, (128, 128)).transpose(2, 0, 1) for img in
              (skdata.astronaut(), skdata.coffee(), skdata.chelsea())]
    return [d.numpy().astype(np.float64) for d in demo] + photos


def test_constant_image_stays_constant():
    img = np.full((3, 32, 32), 0.3)
    removed = np.random.default_rng(0).random((32, 32)) < 0.6
    assert np.abs(road.exact(img, removed) - 0.3).max() < 1e-9
    fast = road.fast(torch.from_numpy(img[None]).float(), torch.from_numpy(removed[None, None]))
    assert (fast - 0.3).abs().max().item() < 1e-6


def test_exact_imputer_fills_a_ramp_hole_with_the_ramp():
    yy, xx = np.mgrid[0:40, 0:48]
    ramp = np.stack([0.01 * xx + 0.005 * yy, 0.02 * yy, 1 - 0.01 * xx]) / 1.5
    removed = np.zeros((40, 48), bool)
    removed[10:30, 12:36] = True
    filled = road.exact(ramp, removed)
    assert np.abs(filled - ramp).max() < 1e-3
    assert not np.allclose(filled[:, removed], 0)


@pytest.mark.parametrize("frac", [0.2, 0.5, 0.8])
def test_fast_imputer_agrees_with_the_exact_solve(demo_data, frac):
    rng = np.random.default_rng(int(frac * 10))
    worst = 1.0
    for img in _photos(demo_data):
        for removed in (rng.random((128, 128)) < frac, _blob_mask(rng, frac)):
            exact = road.exact(img, removed)
            fast = road.fast(torch.from_numpy(img[None]).float(), torch.from_numpy(removed[None, None]))[0].numpy()
            worst = min(worst, np.corrcoef(exact[:, removed].ravel(), fast[:, removed].ravel())[0, 1])
    assert worst >= 0.98, worst


def test_noise_lands_on_removed_pixels_only():
    x = torch.rand(2, 3, 16, 16)
    removed = torch.rand(2, 1, 16, 16) < 0.5
    noise = metrics.noise_fields((3, 16, 16), [1, 2], 0.01)
    out = road.impute(x, removed, noise)
    assert torch.equal(out[~removed.expand_as(x)], x[~removed.expand_as(x)])
    largest = noise[removed.expand_as(x)].abs().max().item()
    assert (out - road.fast(x, removed)).abs().max().item() == pytest.approx(largest)


def test_object_first_falls_faster_than_random_under_both_fills(demo_model, gt_batch):
    x, masks, labels, _ = gt_batch
    x, masks, labels = x[::3][:8], masks[::3][:8], labels[::3][:8]
    assert len(x) >= 8
    obj = masks.astype(np.float32) + 0.01 * np.random.default_rng(1).random(masks.shape)
    rnd = np.random.default_rng(2).random(masks.shape)
    noise = metrics.noise_fields((3, 128, 128), list(range(len(x))), 0.01)
    for fill in metrics.FILLS:
        aucs = {}
        for name, maps in (("object", obj), ("random", rnd)):
            ranks = np.stack([metrics.pixel_ranks(m, np.random.default_rng(i)) for i, m in enumerate(maps)])
            aucs[name] = metrics.auc(*metrics.perturbation_curves(demo_model, x, ranks, labels, "deletion", 8, 8,
                                                                  fill=fill, noise=noise))
        diff = aucs["random"] - aucs["object"]
        gain = metrics.paired_gain(aucs["random"], aucs["object"], np.random.default_rng(0), 1000)
        assert gain["n"] >= 8 and gain["lo"] > 0, (fill, diff)


def test_road_removal_stops_before_every_pixel_is_gone():
    assert list(metrics.step_counts(16, 4, "road", "deletion")) == [0, 4, 8, 12]
    assert list(metrics.step_counts(16, 4, "road", "lerf")) == [0, 4, 8, 12]
    assert list(metrics.step_counts(16, 4, "black", "deletion")) == [0, 4, 8, 12, 16]
    assert list(metrics.step_counts(16, 4, "road", "insertion")) == [0, 4, 8, 12, 16]


class _Constant(nn.Module):
    """Logits that ignore the input."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1) + 0 * x.mean()


def test_saturation_flag_on_a_model_that_ignores_its_input():
    x = torch.rand(2, 3, 16, 16)
    maps = np.random.default_rng(0).random((2, 16, 16))
    sure = explain.deletion_insertion(_Constant([8.0, 0.0]), x, 0, maps, steps=4)
    unsure = explain.deletion_insertion(_Constant([0.0, 0.0]), x, 0, maps, steps=4)
    assert sure.saturated.tolist() == [True, True] and unsure.saturated.tolist() == [False, False]
    assert sure.fill == "road" and sure.order == "morf" and len(sure.x) == 4 and sure.x[-1] == 0.75
    lerf = explain.deletion_insertion(_Constant([0.0, 0.0]), x, 0, maps, steps=4, fill="black", order="lerf")
    assert lerf.x[-1] == 1.0 and lerf.order == "lerf"
    with pytest.raises(explain.ExplainInputError):
        explain.deletion_insertion(_Constant([0.0, 0.0]), x, 0, maps, fill="grey")


def test_saturation_flag_on_the_demo_bread_image(demo_data, demo_model):
    val = dataset.open_split(demo_data, "validation")
    x, _ = dataset.load_batch(val, [val.files.index("1_0.jpg"), val.files.index("6_0.jpg")], 128)
    maps = np.random.default_rng(0).random((2, 128, 128))
    res = explain.deletion_insertion(demo_model, x, [1, 6], maps, steps=2)
    assert res.saturated.tolist() == [True, False], res.blur_probability


def _scores(rng: np.random.Generator, idx: list[int], offset: float) -> dict:
    """Fake per-method scores on pool images idx."""
    n = len(idx)
    return {"idx": idx, "files": [f"v/{i}.jpg" for i in idx], "saturated": np.zeros(n, bool),
            "deletion_auc": rng.random(n) - offset, "lerf_auc": rng.random(n) + offset,
            "insertion_auc": rng.random(n) + offset}


def test_lime_is_compared_with_random_on_its_own_images():
    rng = np.random.default_rng(0)
    scores = {"random": _scores(rng, list(range(33)), 0.0), "lime": _scores(rng, list(range(0, 33, 3)), 0.2)}
    scores["random"]["deletion_auc"][1] = 100.0        # an image LIME did not score must not enter its gain
    ctx = SimpleNamespace(rng=lambda *keys: np.random.default_rng(len(keys)))
    gains = trust.vs_random(scores, ctx, {"trust_bootstrap": 200})["lime"]
    expected = scores["random"]["deletion_auc"][::3] - scores["lime"]["deletion_auc"]
    assert gains["morf_gain"]["n"] == 11 and gains["morf_gain"]["mean"] == pytest.approx(expected.mean())
    assert gains["deletion_gain"] == gains["morf_gain"]
    scores["random"]["saturated"][3] = True             # a saturated image leaves both sides of the pair
    gains = trust.vs_random(scores, ctx, {"trust_bootstrap": 200})["lime"]
    assert gains["lerf_gain"]["n"] == 10 and gains["saturated_left_out"] == 1
    assert trust.paired_indices([0, 3, 6], list(range(33)), {3}) == ([0, 2], [0, 6])


def test_stability_is_one_for_a_deterministic_method_and_below_for_lime(demo_model, demo_ctx):
    x, t = demo_ctx.images[:2], demo_ctx.targets()[:2]
    vanilla = explain.stability(demo_model, x, t, "vanilla")
    assert np.allclose(vanilla.spearman, 1.0) and np.allclose(vanilla.iou_top, 1.0)
    lime = explain.stability(demo_model, x[:1], t[:1], "lime", samples=50)   # image 1's map is 0 at 50 samples
    assert lime.seeds == (0, 1) and (lime.spearman < 1.0).all() and (lime.iou_top < 1.0).all()


def test_occlusion_on_the_noodles_image_misses_redundant_evidence(demo_data, demo_model):
    val = dataset.open_split(demo_data, "validation")
    x, masks = dataset.load_batch(val, [val.files.index("6_0.jpg")], 128)
    with torch.inference_mode():
        p = torch.softmax(demo_model(x), 1)[0]
        grey = torch.where(torch.from_numpy(masks[:, None]), torch.full_like(x, 0.5), x)
        p_grey = torch.softmax(demo_model(grey), 1)[0, 6].item()
    assert p.argmax().item() == 6 and p[6].item() > 0.85          # the target is right and the model is sure
    assert p_grey < 0.1                                            # the whole object grey: the evidence is gone
    occ = explain.attribute(demo_model, x, [6], "occlusion", patch=24, stride=12, value=0.5)
    assert np.abs(occ.maps[0]).max() < 0.1                         # but no single patch moves p by 0.1
    assert metrics.mass_in_mask(occ.maps[0], masks[0]) < masks[0].mean()   # so its top cells lie off the object
    plain = explain.deletion_insertion(demo_model, x, [6], occ, fill="black", steps=16)
    flipped = explain.deletion_insertion(demo_model, x, [6], -occ.maps, fill="black", steps=16)
    assert plain.deletion_auc[0] > 0.6 and flipped.deletion_auc[0] < 0.1   # the ranking is sound: the map is not
