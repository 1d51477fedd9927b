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
import trust
import model


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
    rows = trust.tables(scores, san)
    assert rows["vanilla"]["sanity_check"] == "fails sanity check"
    assert rows["gradcam"]["sanity_check"] == "passes"
    assert rows["random"]["sanity_check"] == "not applicable"
    assert rows["random"]["pointing_game"] == {"mean": None, "std": None, "lo": None, "hi": None, "n": 0}


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    v = np.random.default_rng(1).normal(0.3, 0.1, 40)
    a = metrics.bootstrap(v, np.random.default_rng(7), 2000)
    assert a == metrics.bootstrap(v, np.random.default_rng(7), 2000)           # seeded: same interval
    assert a["n"] == 40 and a["lo"] < a["mean"] < a["hi"]
    half = 1.96 * v.std() / math.sqrt(40)                                       # normal approximation
    assert a["hi"] - a["lo"] == pytest.approx(2 * half, rel=0.2)
    const = metrics.bootstrap([0.5] * 5, np.random.default_rng(0))
    assert const["lo"] == const["hi"] == 0.5
    gain = metrics.paired_gain([0.4, 0.5, 0.6], [0.1, 0.2, 0.3], np.random.default_rng(0))
    assert gain["lo"] == pytest.approx(0.3) and gain["hi"] == pytest.approx(0.3)   # the pairs, not the spread


def test_trust_counts_follow_multiply_adds():


    s = settings.resolve("cpu")   # the 33-image protocol is the default
    full = settings.resolve("cpu", trust_full=True)
    for demo_counts in (trust.trust_counts(73_696_640, s), trust.trust_counts(73_696_640, full)):
        assert (demo_counts["per_class"], demo_counts["sampled_per_class"], demo_counts["sanity"]) == (3, 1, 8)
    big = trust.trust_counts(1_100_000_000, s)                                  # full-size hw3
    assert (big["per_class"], big["sampled_per_class"], big["sanity"]) == (0, 0, 1)
    seq = [trust.trust_counts(m, s) for m in (1e7, 1e8, 2e8, 3e8, 4e8, 1e9, 1e10)]
    for a, b in zip(seq, seq[1:]):                                               # heavier models never get more
        assert all(b[k] <= a[k] for k in ("per_class", "sampled_per_class", "sanity"))
    assert all(c["sampled_per_class"] >= (1 if c["per_class"] else 0) for c in seq)   # one per class at least
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 5))
    assert model.model_macs(net, 8) == 4 * 8 * 8 * 3 * 9 + 4 * 8 * 8 * 5


def test_shortcut_score_is_the_share_on_the_mark(demo_ctx):
    n = 6
    mark = np.zeros((n, 16, 16), bool)
    mark[:, :4, :4] = True
    on = mark.astype(np.float32)                                                 # all mass on the mark
    spread = np.ones((n, 16, 16), np.float32)
    labels = np.array([9, 9, 9, 9, 9, 3])
    marked = {"marks": mark, "labels": labels, "files": list("abcdef"), "shortcut_class": 9}
    idx = list(range(n))
    out = trust.shortcut_scores(marked, {"on": {"idx": idx, "maps": on}, "spread": {"idx": idx, "maps": spread}},
                                {"trust_bootstrap": 100}, demo_ctx)
    assert out["on"]["shortcut_class"]["mean"] == 1.0 and out["on"]["shortcut_class"]["n"] == 5
    assert out["on"]["reveals_shortcut"] and not out["spread"]["reveals_shortcut"]
    assert out["spread"]["other_classes"]["mean"] == pytest.approx(16 / 256)
    # below 5 images of the shortcut class: no star, however large the share
    few = trust.shortcut_scores({**marked, "labels": np.array([9, 9, 9, 3, 3, 3])}, {"on": {"idx": idx, "maps": on}},
                                {"trust_bootstrap": 100}, demo_ctx)
    assert few["on"]["shortcut_class"]["n"] == 3 and not few["on"]["reveals_shortcut"]
    assert "[" not in trust._fmt(few["on"]["shortcut_class"])
    assert out["spread"]["mark_area_share"] == pytest.approx(16 / 256)


def test_trust_full_flag_selects_full_settings_and_set_wins(tmp_path, demo_data):
    assert trust.trust_settings(make_ctx(tmp_path))["deletion_steps"] == settings.resolve("cpu")["deletion_steps"]
    full = make_ctx(tmp_path, "--trust", "full")
    assert trust.trust_settings(full)["deletion_steps"] == settings.FULL["deletion_steps"]
    assert full.settings["lime_samples"] == settings.resolve("cpu")["lime_samples"]   # only the trust keys change
    assert trust.trust_settings(make_ctx(tmp_path, "--trust", "full", "--set", "deletion_steps=8")
                                  )["deletion_steps"] == 8


def test_trust_task_on_selected_images_when_the_model_is_too_costly(tmp_path, demo_data):
    ctx = make_ctx(tmp_path, "--set", "trust_images=2", "--set", "deletion_steps=8", "--set", "sanity_smoothgrad_n=2",
                   "--set", "sanity_ig_steps=2", "--set", "trust_ref_macs=1000",   # 1000 MACs: no validation images
                   "--set", "lime_samples=40", "--set", "shap_max_evals=60", "--set", "smoothgrad_n=2")
    t, p = ctx.targets(), ctx.preds()
    zeros = np.zeros((len(ctx.files), 128, 128), np.float32)
    for m in explain.method_names():   # maps of this run, in memory: cheap stand-ins, an all-zero map for lime
        ctx.maps[m] = explain.Attribution(m, saliency.vanilla(ctx.model, ctx.images, t) if m == "vanilla" else
                                          zeros + (m != "lime") * np.random.default_rng(0).random(zeros.shape), t)
    save_maps(ctx.out, "occlusion", np.zeros((1, 128, 128), np.float32), ["other.jpg"], t[:1], p[:1])  # stale file
    result = trust.task_trust(ctx)
    assert {f.name for f in result.files} == {"trust_curves.png", "sanity_check.png", "trust.json", "trust.csv"}
    record = json.loads((tmp_path / "trust.json").read_text())
    assert record["source"] == "selected" and record["counts"]["per_class"] == 0 and result.sanity_images == 1
    assert set(record["methods"]) == set(explain.method_names()) | {"random"}
    assert record["skipped"] == {}
    for m, row in record["methods"].items():
        assert set(metrics.METRICS) <= set(row)
        assert row["deletion_auc"]["n"] == 2 - record["saturation"]["n_saturated"]   # saturated: left out
        assert 0 <= row["deletion_auc"]["mean"] <= 1
        assert row["deletion_auc"]["lo"] <= row["deletion_auc"]["mean"] <= row["deletion_auc"]["hi"]
    assert record["methods"]["lime"]["mass_in_mask"]["mean"] in (0.0, None)
    assert record["methods"]["vanilla"]["sanity_check"] in ("passes", "fails sanity check")
    assert record["methods"]["lime"]["sanity_check"] == "not applicable"
    assert "pastes" in record["definitions"]["protocol"] and "ROAD" in record["definitions"]["protocol"]
    assert "MoRF" in record["definitions"]["deletion_auc"] and "saturation" in record["definitions"]
    rows = list(csv.DictReader((tmp_path / "trust.csv").open()))
    assert [r["method"] for r in rows] == explain.method_names() + ["random"]
    assert "nan" not in (tmp_path / "trust.csv").read_text().lower()
    assert result.methods["random"]["sanity_check"] == "not applicable"
    assert set(record["stability"]) == set(trust.STOCHASTIC) and record["stability"]["lime"]["n"] == len(ctx.files)


def test_trust_task_scores_validation_images_per_class(tmp_path, demo_data):
    ctx = make_ctx(tmp_path, "--set", "trust_per_class=2", "--set", "deletion_steps=4", "--set", "sanity_images=2",
                   "--set", "sanity_smoothgrad_n=2", "--set", "sanity_ig_steps=2", "--set", "smoothgrad_n=2",
                   "--set", "ig_steps=2", "--set", "lime_samples=40", "--set", "shap_max_evals=60",
                   "--set", "trust_bootstrap=200")
    for m in explain.method_names():   # the figures' maps are not used off the selected images: cheap stand-ins
        ctx.maps[m] = explain.Attribution(m, np.zeros((len(ctx.files), 128, 128), np.float32), ctx.targets())
    result = trust.task_trust(ctx)
    record = json.loads((tmp_path / "trust.json").read_text())
    k = ctx.num_classes
    assert record["source"] == "validation" and result.images == 2 * k
    n = record["images_per_method"]
    assert n["lime"] == n["shap"] == k and all(n[m] == 2 * k for m in n if m not in trust.SAMPLED)
    files = record["per_image"]["lime"]["files"]
    assert sorted(int(f.split("/")[1].split("_")[0]) for f in files) == list(range(k))   # one per class
    assert len(record["sanity"]["files"]) == 2
    for m in explain.method_names():
        for g in trust.GAINS:   # paired on the method's own images, less the saturated ones
            cell = record["vs_random"][m][g]
            assert cell["n"] + record["vs_random"][m]["saturated_left_out"] == n[m]
            assert cell["lo"] <= cell["mean"] <= cell["hi"]
    assert record["saturation"]["n_saturated"] == len(record["saturation"]["files"])
    header = next(csv.reader((tmp_path / "trust.csv").open()))
    assert {"deletion_auc_lo", "deletion_auc_hi", "deletion_auc_n", "insertion_gain_lo"} <= set(header)


@pytest.fixture(scope="module")
def demo_gains(tmp_path_factory, demo_data) -> dict:
    """The 33-image protocol (the default run's trust task): Grad-CAM's and IG's paired gains over random."""
    ctx = make_ctx(tmp_path_factory.mktemp("gains"))
    s = trust.trust_settings(ctx)
    pool, _, _ = trust.pools(ctx, s)
    assert pool["source"] == "validation" and len(pool["files"]) == 3 * ctx.num_classes
    scores = {}
    for m in ("gradcam", "integrated_gradients", "random"):
        idx = list(range(len(pool["files"])))
        e = {"idx": idx, "maps": trust._maps_for(ctx, pool, m, idx), "targets": pool["targets"]}
        scores[m] = trust.score(ctx, pool, e, s) | {"idx": idx}
    return trust.vs_random(scores, ctx, s)


@pytest.mark.parametrize("method,gain,bound", [
    ("gradcam", "morf_gain", 0.10), ("gradcam", "insertion_gain", 0.05),
    ("integrated_gradients", "morf_gain", 1e-9), ("integrated_gradients", "insertion_gain", 0.05)])
def test_gradcam_and_ig_beat_random_with_margin_on_the_demo(demo_gains, method, gain, bound):
    """The lower bound of the 95% interval of each method's paired gain over random maps meets the bar."""
    low = {m: (round(g["morf_gain"]["lo"], 3), round(g["insertion_gain"]["lo"], 3)) for m, g in demo_gains.items()}
    assert demo_gains[method][gain]["lo"] >= bound, low
