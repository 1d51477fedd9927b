"""Command-line behaviour: exit codes and one-line messages for bad input; tasks and run.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import main
import model

REPO = Path(__file__).resolve().parents[1]


def run_main(capsys, *argv: str) -> tuple[int, str]:
    """Run main.main in-process; returns (exit code, stderr)."""
    code = main.main(list(argv))
    return code, capsys.readouterr().err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (64 + 8 * i, 48), (40 * i, 120, 200)).save(folder / f"photo{i}.jpg")
    return folder


@pytest.fixture()
def small_ckpt(tmp_path) -> Path:
    path = tmp_path / "small.pt"
    torch.save({"model_state_dict": model.HW3Net(width=0.125).state_dict(),
                "meta": {"arch": "hw3", "arch_options": {"width": 0.125}, "input_size": 128}}, path)
    return path


def test_missing_data_folder(capsys, tmp_path):
    code, err = run_main(capsys, "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--task", "confusion")
    assert code == 2 and "does not exist" in one_line_error(err)


def test_empty_folder(capsys, tmp_path, small_ckpt):
    (tmp_path / "empty").mkdir()
    code, err = run_main(capsys, "--data", str(tmp_path / "empty"), "--checkpoint", str(small_ckpt),
                         "--out", str(tmp_path / "o"), "--task", "confusion")
    assert code == 2 and "no images" in one_line_error(err)


def test_data_without_checkpoint(capsys, tmp_path, photos):
    code, err = run_main(capsys, "--data", str(photos), "--out", str(tmp_path / "o"), "--task", "confusion")
    assert code == 2 and "--checkpoint" in one_line_error(err)


def test_corrupt_selected_image(capsys, tmp_path, photos, small_ckpt):
    (photos / "photo1.jpg").write_bytes(b"\xff\xd8 broken")
    code, err = run_main(capsys, "--data", str(photos), "--checkpoint", str(small_ckpt), "--out", str(tmp_path / "o"),
                         "--task", "confusion")
    assert code == 2 and "photo1.jpg" in one_line_error(err)


def test_wrong_architecture(capsys, tmp_path, photos, small_ckpt):
    code, err = run_main(capsys, "--data", str(photos), "--checkpoint", str(small_ckpt), "--arch", "hw5ta",
                         "--out", str(tmp_path / "o"), "--task", "confusion")
    line = one_line_error(err)
    assert code == 2 and "does not fit --arch hw5ta" in line and "--arch hw3 --width 0.125" in line


def test_index_out_of_range(capsys, tmp_path, demo_data):
    code, err = run_main(capsys, "--images", "100000", "--out", str(tmp_path / "o"), "--task", "confusion")
    assert code == 2 and "out of range" in one_line_error(err)


def test_unwritable_output(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_main(capsys, "--out", str(blocker / "sub"), "--task", "confusion")
    assert code == 2 and "not writable" in one_line_error(err)


def test_unknown_task_and_setting(capsys, tmp_path):
    code, err = run_main(capsys, "--task", "nonsense", "--out", str(tmp_path))
    assert code == 2 and "unknown task" in one_line_error(err)
    code, err = run_main(capsys, "--task", "confusion", "--set", "nope=1", "--out", str(tmp_path))
    assert code == 2 and "--set" in one_line_error(err)


def test_plain_photo_folder_runs_and_skips_confusion(capsys, tmp_path, photos, small_ckpt):
    out = tmp_path / "o"
    code, err = run_main(capsys, "--data", str(photos), "--checkpoint", str(small_ckpt), "--out", str(out),
                         "--task", "confusion")
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["tasks"]["confusion"].startswith("skipped")
    assert [im["file"] for im in record["images"]] == ["photo0.jpg", "photo1.jpg", "photo2.jpg"]
    assert record["checkpoint_sha256"] == model.sha256_file(small_ckpt)
    assert record["arch"] == "hw3" and record["checkpoint_meta"]["arch_options"]["width"] == 0.125


def test_confusion_on_demo(tmp_path, demo_data):
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "--task", "confusion", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = (out / "confusion_matrix.csv").read_text().splitlines()
    counts = [list(map(int, r.split(",")[1:])) for r in rows[1:]]
    assert len(counts) == 11 and sum(map(sum, counts)) == len(list((demo_data / "validation").iterdir()))
    preds = (out / "predictions.csv").read_text().splitlines()
    assert preds[0].startswith("file,label") and len(preds) == 1 + sum(map(sum, counts))
    assert "confusion" in proc.stdout and "total" in proc.stdout  # the closing table
    record = json.loads((out / "run.json").read_text())
    assert 0.80 <= record["results"]["confusion"]["accuracy"] <= 0.95   # the demo plants confusions
