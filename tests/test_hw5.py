"""hw5.sh: checkpoint fetching fails cleanly; the no-argument demo run writes every figure, identically twice."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


import demo
from conftest import HW5_ENV, REPO
# DESIGN.md's output contract: what a default run must write.
EXPECTED = ["saliency.png", "smoothgrad.png", "integrated_gradients.png", "gradcam.png", "attribution_comparison.png",
            "filter_visualization.png", "filter_visualization_robust.png", "filter_activations.png", "lime.png",
            "lime_details.png", "lime_classes.png", "confusion_matrix.png", "confusion_matrix.csv", "predictions.csv",
            "deepdream.png", "class_models.png", "occlusion.png", "shap.png", "trust_curves.png", "sanity_check.png",
            "trust.json", "trust.csv", "report.pdf", "report.html", "run.json"]
METHODS = ["vanilla", "smoothgrad", "integrated_gradients", "gradcam", "lime", "occlusion", "shap"]


def hw5(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 120
        ) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HW5_")}  # only what the test sets
    full_env.update(env or {})
    return subprocess.run(["bash", str(REPO / "hw5.sh"), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)


def test_unset_checkpoint_id_exits_2_with_one_line(tmp_path, demo_data):
    proc = hw5(str(demo_data), str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "CHECKPOINT_ID" in proc.stderr
    assert not (tmp_path / "out").exists()  # never a silent fallback to the demo


def test_unreachable_checkpoint_fails_within_a_minute(tmp_path, demo_data):
    t0 = time.monotonic()
    proc = hw5(str(demo_data), str(tmp_path / "out"),
               env={"HW5_CHECKPOINT_ID": "1AbCdEfGhIjKlMnOpQrStUvWxYz012345", "HW5_CACHE": str(tmp_path / "cache")})
    assert time.monotonic() - t0 < 60
    assert proc.returncode not in (0, 2) and proc.stderr.count("\n") == 1 and "HW5_CHECKPOINT=" in proc.stderr
    assert not list((tmp_path / "cache").glob("*"))  # no partial download left behind


def test_bad_arguments(tmp_path):
    assert hw5("only-one").returncode == 2
    proc = hw5(str(tmp_path / "missing"), str(tmp_path / "out"))
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_local_checkpoint_and_sha256(tmp_path, demo_data):
    env = {"HW5_CHECKPOINT": str(demo.DEMO_CHECKPOINT), "HW5_ARGS": "--task confusion",
           "HW5_CHECKPOINT_SHA256": "0" * 64}
    proc = hw5(str(demo_data), str(tmp_path / "out"), env=env)
    assert proc.returncode == 2 and "sha256" in proc.stderr
    env.pop("HW5_CHECKPOINT_SHA256")
    proc = hw5(str(demo_data), str(tmp_path / "out"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "confusion_matrix.png").is_file()


def test_demo_run_writes_every_figure(pipeline_run):
    missing = [f for f in EXPECTED + [f"arrays/{m}.npz" for m in METHODS] if not (pipeline_run / f).is_file()]
    assert not missing
    assert not list(pipeline_run.rglob("*.tmp")) and not list(pipeline_run.rglob(".*"))


def test_second_run_is_byte_identical(pipeline_run, tmp_path):
    proc = subprocess.run(["bash", str(REPO / "hw5.sh")], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env=HW5_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = tmp_path / "output"
    names = sorted(str(p.relative_to(pipeline_run)) for p in pipeline_run.rglob("*") if p.is_file())
    # run.json and report.html hold this run's wall-clock timings; every figure, array and report.pdf must match
    timed = {"run.json", "report.html"}
    differ = [n for n in names if n not in timed and (again / n).read_bytes() != (pipeline_run / n).read_bytes()]
    assert not differ
