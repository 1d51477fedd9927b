"""The one entry point: same maps as the pipeline, target handling, errors, no matplotlib, maps in memory."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, make_ctx

import budget
import explain
import main
import trust
from errors import ExplainInputError
from outputs import load_maps, save_maps

QUICK = ("--set", "smoothgrad_n=3", "--set", "ig_steps=4", "--set", "lime_samples=20", "--set", "occlusion_stride=52",
         "--set", "shap_max_evals=40")
ATTRIBUTION_TASKS = "saliency,smoothgrad,ig,gradcam,lime,shap,occlusion"


def _run(out: Path, *flags: str) -> None:
    assert main.main(["--out", str(out), "--device", "cpu", *flags]) == 0


def _entry_point_matches_pipeline(out: Path, ctx) -> None:
    """Every method's arrays/<method>.npz equals attribute() on the same images with the run's settings."""
    record = json.loads((out / "run.json").read_text())
    settings = record["settings"]
    for name in explain.method_names():
        saved = load_maps(out / "arrays" / f"{name}.npz")
        m = explain.get_method(name)
        opts = explain.method_options(name, settings)
        if name == "gradcam":
            opts["layer"] = record["results"]["gradcam"]["layer"]
        att = explain.attribute(ctx.model, ctx.images, saved["targets"], name, batch_size=settings[m.batch_key],
                                seed=record["seed"], keys=list(saved["files"]), precision=record["precision"],
                                **opts)
        np.testing.assert_allclose(att.maps, saved["maps"], rtol=1e-5, atol=1e-6 * np.abs(saved["maps"]).max(),
                                   err_msg=name)


def test_entry_point_equals_pipeline_on_demo(demo_data, tmp_path):
    out = tmp_path / "run"
    _run(out, "--task", ATTRIBUTION_TASKS, "--images", "0,1", *QUICK)
    _entry_point_matches_pipeline(out, make_ctx(tmp_path / "ctx", "--images", "0,1"))


def test_entry_point_equals_pipeline_on_resnet18(demo_data, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(sorted((demo_data / "testing").glob("*.jpg"))[len(name)].read_bytes())
    flags = ("--data", str(folder), "--arch", "resnet18", "--num-classes", "5", "--allow-random-weights",
             "--input-size", "64")
    out = tmp_path / "run"
    _run(out, "--task", ATTRIBUTION_TASKS, *flags, *QUICK)
    _entry_point_matches_pipeline(out, make_ctx(tmp_path / "ctx", *flags))


def test_targets_broadcast_pred_and_wrong_length(demo_model, demo_ctx):
    x = demo_ctx.images[:3]
    one = explain.attribute(demo_model, x, 2, "vanilla")
    assert one.targets.tolist() == [2, 2, 2]
    np.testing.assert_array_equal(one.maps, explain.attribute(demo_model, x, [2, 2, 2], "vanilla").maps)
    pred = explain.attribute(demo_model, x, "pred", "vanilla")
    with torch.inference_mode():
        assert pred.targets.tolist() == demo_model(x).argmax(1).tolist()
    np.testing.assert_array_equal(explain.attribute(demo_model, x, torch.tensor(pred.targets), "vanilla").maps,
                                  pred.maps)
    with pytest.raises(ExplainInputError, match=r"2 targets for 3 images"):
        explain.attribute(demo_model, x, [1, 2], "vanilla")
    with pytest.raises(ExplainInputError, match="out of range"):
        explain.attribute(demo_model, x, 11, "vanilla")
    with pytest.raises(ExplainInputError, match="no option 'steps'"):
        explain.attribute(demo_model, x, 0, "vanilla", steps=3)
    with pytest.raises(ExplainInputError, match="unknown method"):
        explain.attribute(demo_model, x, 0, "nope")


def test_extras_and_trust_call_shape(demo_model, demo_ctx):
    x, t = demo_ctx.images[:2], demo_ctx.targets()[:2]
    ig = explain.attribute(demo_model, x, t, "integrated_gradients", steps=16)
    assert ig.gaps.shape == (2,) and ig.maps.dtype == np.float32 and ig.options["steps"] == 16
    assert explain.attribute(demo_model, x, t, "smoothgrad", n=2).sigma == 0.15
    assert explain.attribute(demo_model, x, t, "gradcam").layer == "cnn.18"
    lime = explain.attribute(demo_model, x, t, "lime", samples=30)
    assert lime.segments.shape == (2, 128, 128) and lime.local_fit.shape == (2,)
    by_name = explain.deletion_insertion(demo_model, x, t, "gradcam", steps=4)
    by_att = explain.deletion_insertion(demo_model, x, t, explain.attribute(demo_model, x, t, "gradcam"), steps=4)
    np.testing.assert_array_equal(by_name.deletion_auc, by_att.deletion_auc)
    assert by_name.insertion.shape == (2, 5)
    gt = explain.ground_truth(demo_model, x, t, demo_ctx.masks[:2], "gradcam")
    assert gt.kept.tolist() == [0, 1] and (gt.mass_in_mask_ratio > 0).all()
    san = explain.sanity_check(demo_model, x[:1], t[:1], "vanilla")
    assert san.layers[0] == "original" and san.spearman[0, 0] == pytest.approx(1.0)


def test_any_output_form(demo_ctx):
    class Tupled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x), {"aux": 1}
    x, t = demo_ctx.images[:2], demo_ctx.targets()[:2]
    np.testing.assert_array_equal(explain.attribute(Tupled(demo_ctx.model), x, t, "vanilla").maps,
                                  explain.attribute(demo_ctx.model, x, t, "vanilla").maps)


def test_arrays_of_another_run_change_nothing(demo_data, tmp_path):
    flags = ("--task", "compare,trust", "--images", "0,1", *QUICK, "--set", "trust_images=2",
             "--set", "trust_per_class=0", "--set", "deletion_steps=4", "--set", "sanity_smoothgrad_n=2",
             "--set", "sanity_ig_steps=2")
    _run(tmp_path / "clean", *flags)
    dirty = tmp_path / "dirty"
    for m in explain.method_names():   # stale arrays: other files, other maps, another model's classes
        save_maps(dirty, m, np.ones((3, 64, 64), np.float32), ["x.jpg", "y.jpg", "z.jpg"], [7, 7, 7], [1, 1, 1])
    _run(dirty, *flags)
    for name in ("attribution_comparison.png", "trust_curves.png", "sanity_check.png", "trust.json", "trust.csv"):
        assert (tmp_path / "clean" / name).read_bytes() == (dirty / name).read_bytes(), name


def test_compute_modules_do_not_import_matplotlib():
    code = ("import sys; sys.path.insert(0, '.');"
            "import explain, methods, saliency, lime_explain, occlusion, metrics, filter_vis, deep_dream, confusion,"
            " context, model, dataset;"
            "assert 'matplotlib' not in sys.modules, sorted(m for m in sys.modules if 'matplotlib' in m)[:3]")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_time_budget_scales_trust_settings(demo_data, tmp_path):
    ctx = make_ctx(tmp_path, "--trust", "full", "--time-budget", "5")
    full = dict(ctx.settings)
    budget.apply(ctx, ["saliency", "trust"], 5.0)
    s = trust.trust_settings(ctx)
    assert s["deletion_steps"] < full["deletion_steps"] and s["deletion_steps"] == ctx.settings["deletion_steps"]
    assert s["trust_images"] <= full["trust_images"]


def test_a_bug_inside_a_method_is_an_internal_error(monkeypatch, tmp_path, capsys, demo_data):
    import saliency

    def broken(*args, **kwargs):
        raise ValueError("a bug, not bad input")
    monkeypatch.setattr(saliency, "vanilla", broken)
    assert main.main(["--out", str(tmp_path), "--task", "saliency", "--images", "0"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error" in err


def test_readme_from_python_block_runs():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == explain.method_names()
    assert all("deletion AUC" in ln and "insertion AUC" in ln for ln in lines)


@pytest.mark.parametrize("method,opts", [("integrated_gradients", {"steps": 8}), ("gradcam", {})])
def test_noise_tunnel_composes_over_gradient_methods(demo_model, demo_ctx, method, opts):
    """With one copy and no noise the tunnel is the plain method; with noise it averages different maps."""
    x = demo_ctx.images[:2]
    plain = explain.attribute(demo_model, x, "pred", method, **opts)
    same = explain.attribute(demo_model, x, "pred", method, noise_tunnel={"n": 1, "sigma": 0.0}, **opts)
    scale = float(np.abs(plain.maps).max())
    np.testing.assert_allclose(same.maps, plain.maps, rtol=1e-4, atol=1e-5 * scale)
    noisy = explain.attribute(demo_model, x, "pred", method, noise_tunnel={"n": 3, "sigma": 0.2}, **opts)
    assert noisy.sigma == 0.2 and np.abs(noisy.maps - plain.maps).max() > 1e-3 * scale


def test_smoothgrad_is_the_noise_tunnel_over_vanilla(demo_model, demo_ctx):
    x = demo_ctx.images[:2]
    sg = explain.attribute(demo_model, x, "pred", "smoothgrad", n=4, sigma=0.15, seed=3)
    tunnel = explain.attribute(demo_model, x, "pred", "vanilla", noise_tunnel={"n": 4, "sigma": 0.15}, seed=3)
    np.testing.assert_array_equal(sg.maps, tunnel.maps)
    with pytest.raises(ExplainInputError, match="gradient methods"):
        explain.attribute(demo_model, x, "pred", "occlusion", noise_tunnel={"n": 2, "sigma": 0.1})
    with pytest.raises(ExplainInputError, match="noise_tunnel takes"):
        explain.attribute(demo_model, x, "pred", "vanilla", noise_tunnel={"n": 2})
