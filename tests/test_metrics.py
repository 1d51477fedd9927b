"""Trust metrics: deletion/insertion against a random baseline, ground-truth scores, the sanity check, the task."""
from __future__ import annotations

import csv
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import main
import explain
import metrics
import saliency
import settings
from conftest import make_ctx
from outputs import save_maps


def _ranks(maps: np.ndarray) -> np.ndarray:
    """Pixel ranks for a stack of maps, ties broken with a fixed seed per image."""
    return np.stack([metrics.pixel_ranks(m, np.random.default_rng(i)) for i, m in enumerate(maps)])


def test_map_equal_to_mask_scores_one_and_zero_map_is_defined():
    mask = np.zeros((32, 32), bool)
    mask[8:20, 10:24] = True
    assert metrics.pointing_game(mask.astype(np.float32), mask) == 1.0
    assert metrics.mass_in_mask(mask.astype(np.float32), mask) == 1.0
    zero = np.zeros((32, 32), np.float32)
    assert metrics.pointing_game(zero, mask) == 0.0          # a constant map points nowhere
    assert metrics.mass_in_mask(zero, mask) == 0.0           # and holds no mass: defined, never NaN
    assert metrics.spearman(zero, mask) == 0.0               # no ranking, no correlation
    neg = -mask.astype(np.float32)                           # only negative evidence: no positive mass
    assert metrics.mass_in_mask(neg, mask) == 0.0
    off = np.roll(mask, 16, axis=1).astype(np.float32) * 0.5 + mask * 0.25
    assert metrics.pointing_game(off, mask) < 1.0


def test_zero_map_deletion_curve_is_finite(demo_model, demo_ctx):
    x, t = demo_ctx.images[:1], demo_ctx.targets()[:1]
    xs, probs = metrics.perturbation_curves(demo_model, x, _ranks(np.zeros((1, 128, 128))), t, "deletion", steps=4)
    assert xs[0] == 0.0 and xs[-1] == 1.0 and len(xs) == 5
    a = metrics.auc(xs, probs)[0]
    assert math.isfinite(a) and 0.0 <= a <= 1.0
    with torch.inference_mode():
        p0 = torch.softmax(demo_model(x), 1)[0, t[0]].item()
    assert probs[0, 0] == pytest.approx(p0, abs=1e-5)        # step 0 is the untouched image


def test_gradcam_more_faithful_than_random_on_demo(demo_model, demo_ctx, gt_batch):
    x, _, labels, _ = gt_batch
    x, labels = x[::2][:6], labels[::2][:6]                  # one correctly classified image per class, six classes
    cam = saliency.gradcam(demo_model, x, labels, demo_ctx.layer(demo_ctx.conv_layers()[-1]))
    rnd = np.random.default_rng(0).random(cam.shape)
    result = {}
    for name, maps in (("gradcam", cam), ("random", rnd)):
        ranks = _ranks(maps)
        result[name] = [metrics.auc(*metrics.perturbation_curves(demo_model, x, ranks, labels, mode, steps=16)).mean()
                        for mode in ("deletion", "insertion")]
    assert result["gradcam"][0] < result["random"][0], result
    assert result["gradcam"][1] > result["random"][1], result


def test_vanilla_gradient_decorrelates_after_full_randomisation(demo_ctx):
    model = demo_ctx.model
    before = [p.detach().clone() for p in model.parameters()]
    res = metrics.cascade(model, demo_ctx.net, demo_ctx.images[:1], demo_ctx.targets()[:1],
                          {"vanilla": lambda m, x, t: saliency.vanilla(m, x, t)}, seed=0)
    rho = res["spearman"]["vanilla"]
    assert res["layers"][0] == "original" and res["layers"][1] == "fc.4" and res["layers"][-1] == "cnn.0"
    assert rho[0, 0] == pytest.approx(1.0)
    assert rho[-1, 0] < metrics.SANITY_FAIL, rho[:, 0]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # the user's model is untouched


def test_sanity_verdict_flags_high_correlation():
    scores = {"vanilla": {"deletion_auc": [0.1], "insertion_auc": [0.9]},
              "gradcam": {"deletion_auc": [0.1], "insertion_auc": [0.9]},
              "random": {"deletion_auc": [0.2], "insertion_auc": [0.5]}}
    san = {"spearman": {"vanilla": np.array([[1.0], [0.7]]), "gradcam": np.array([[1.0], [0.1]])}}
    rows = metrics.tables(scores, san)
    assert rows["vanilla"]["sanity_check"] == "fails sanity check"
    assert rows["gradcam"]["sanity_check"] == "passes"
    assert rows["random"]["sanity_check"] == "not applicable"
    assert rows["random"]["pointing_game"] == {"mean": None, "std": None, "n": 0}


def test_trust_full_flag_selects_full_settings_and_set_wins(tmp_path, demo_data):
    assert metrics.trust_settings(make_ctx(tmp_path))["deletion_steps"] == settings.resolve("cpu")["deletion_steps"]
    full = make_ctx(tmp_path, "--trust", "full")
    assert metrics.trust_settings(full)["deletion_steps"] == settings.FULL["deletion_steps"]
    assert full.settings["lime_samples"] == settings.resolve("cpu")["lime_samples"]   # only the trust keys change
    assert metrics.trust_settings(make_ctx(tmp_path, "--trust", "full", "--set", "deletion_steps=8")
                                  )["deletion_steps"] == 8


def test_trust_task_writes_tables_and_figures(tmp_path, demo_data):
    ctx = make_ctx(tmp_path, "--set", "trust_images=2", "--set", "deletion_steps=8", "--set", "sanity_smoothgrad_n=2",
                   "--set", "sanity_ig_steps=2")
    t, p = ctx.targets(), ctx.preds()
    zeros = np.zeros((len(ctx.files), 128, 128), np.float32)
    for m in explain.method_names():   # maps of this run, in memory: cheap stand-ins, an all-zero map for lime
        ctx.maps[m] = explain.Attribution(m, saliency.vanilla(ctx.model, ctx.images, t) if m == "vanilla" else
                                          zeros + (m != "lime") * np.random.default_rng(0).random(zeros.shape), t)
    save_maps(ctx.out, "occlusion", np.zeros((1, 128, 128), np.float32), ["other.jpg"], t[:1], p[:1])  # stale file
    result = metrics.task_trust(ctx)
    assert {f.name for f in result.files} == {"trust_curves.png", "sanity_check.png", "trust.json", "trust.csv"}
    record = json.loads((tmp_path / "trust.json").read_text())
    assert set(record["methods"]) == set(explain.method_names()) | {"random"}
    assert record["skipped"] == {}
    for m, row in record["methods"].items():
        assert set(metrics.METRICS) <= set(row)
        assert row["deletion_auc"]["n"] == 2 and 0 <= row["deletion_auc"]["mean"] <= 1
        assert row["pointing_game"]["n"] == 2                    # the demo has masks
    assert record["methods"]["lime"]["mass_in_mask"]["mean"] == 0.0
    assert record["methods"]["vanilla"]["sanity_check"] in ("passes", "fails sanity check")
    assert record["methods"]["lime"]["sanity_check"] == "not applicable"
    rows = list(csv.DictReader((tmp_path / "trust.csv").open()))
    assert [r["method"] for r in rows] == explain.method_names() + ["random"]
    assert "nan" not in (tmp_path / "trust.csv").read_text().lower()
    assert result.methods["random"]["sanity_check"] == "not applicable"
