"""What a hostile or careless user meets: every bad input is one line and exit 2, no code runs unless named, phone
photos are explained, NaN models stop with the image's name, signals leave only complete files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dataset
import main
from errors import ExplainInputError

REPO = Path(__file__).resolve().parents[1]
DEMO_CKPT = REPO / "checkpoints" / "demo_hw3_w025.pt"
PY = sys.executable

MODEL_FILES = {
    # a model file whose folder has its own model.py (the name of one of our modules)
    "own/model.py": "import torch\n\n\nclass Tiny(torch.nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.c = torch.nn.Conv2d(3, 4, 3)\n"
                    "        self.f = torch.nn.Linear(4, 3)\n\n    def forward(self, x):\n"
                    "        return self.f(self.c(x).mean((2, 3)))\n",
    "own/net.py": "import torch\nfrom model import Tiny\n\n\ndef build():\n    torch.manual_seed(0)\n    return Tiny()\n",
    # a checkpoint's meta points here: importing it leaves a marker file
    "evil/net.py": "import pathlib\npathlib.Path(__file__).with_name('MARKER').write_text('ran')\nimport torch\n\n\n"
                   "def build():\n    return torch.nn.Linear(1, 1)\n",
    "odd.py": "import torch\n\n\nclass NaN(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.c = torch.nn.Conv2d(3, 4, 3)\n        self.f = torch.nn.Linear(4, 3)\n\n"
              "    def forward(self, x):\n        return self.f(torch.log(self.c(x) - 100).mean((2, 3)))\n\n\n"
              "class One(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.f = torch.nn.Linear(3, 3)\n\n    def forward(self, x):\n"
              "        assert len(x) == 1, 'batches of one only'\n        return self.f(x.mean((2, 3)))\n\n\n"
              "def nan():\n    return NaN()\n\n\ndef single():\n    return One()\n\n\n"
              "def one_class():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3), torch.nn.AdaptiveAvgPool2d(1),"
              " torch.nn.Flatten())\n",
}


def _jpeg(path: Path, seed: int) -> None:
    """A small random JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.default_rng(seed).random((40, 52, 3)) * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Photos named like a phone's, a tiny Food-11 tree with a label beyond 11, a truncated JPEG, model files and
    checkpoints with bad meta."""
    root = tmp_path_factory.mktemp("hostile")
    _jpeg(root / "photos" / "20240612_101500.jpg", 0)
    _jpeg(root / "photos" / "3_1.jpg", 1)
    _jpeg(root / "food" / "training" / "0_1.jpg", 2)
    _jpeg(root / "food" / "validation" / "0_1.jpg", 3)
    _jpeg(root / "food" / "validation" / "11_1.jpg", 4)
    _jpeg(root / "trunc" / "full.jpg", 5)
    data = (root / "trunc" / "full.jpg").read_bytes()
    (root / "trunc" / "cut.jpg").write_bytes(data[:len(data) // 2])
    (root / "trunc" / "full.jpg").unlink()
    for name, text in MODEL_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    demo = torch.load(DEMO_CKPT, weights_only=True)
    torch.save({"model_state_dict": {"weight": torch.zeros(1, 1)}, "meta": {"arch": f"{root}/evil/net.py:build"}},
               root / "evil.pt")
    for key, value in (("input_size", "128"), ("mean", [0.5]), ("class_names", 11)):
        torch.save({"model_state_dict": demo["model_state_dict"], "meta": {**demo["meta"], key: value}},
                   root / f"meta_{key}.pt")
    return {"root": root, "photos": root / "photos", "food": root / "food", "trunc": root / "trunc"}


def fill(args: list[str], world: dict[str, Path]) -> list[str]:
    """Arguments with {root}, {photos}, ... filled in."""
    return [a.format(**world) for a in args]


PHOTOS = ["--data", "{photos}", "--checkpoint", str(DEMO_CKPT), "--device", "cpu", "--task", "saliency"]

# (case, arguments, exit code, a word the error line must hold)
CLI_CASES = [
    ("checkpoint names code", ["--data", "{photos}", "--checkpoint", "{root}/evil.pt", "--task", "saliency"], 2,
     "evil/net.py"),
    ("phone names explained", PHOTOS, 0, ""),
    ("model file imports its own model.py", ["--data", "{photos}", "--arch", "{root}/own/net.py:build", "--task",
                                             "saliency", "--device", "cpu"], 0, ""),
    ("out is data", PHOTOS[:-2] + ["--task", "saliency", "--out", "{photos}"], 2, "--out"),
    ("deletion_steps 0", PHOTOS + ["--set", "deletion_steps=0"], 2, "deletion_steps"),
    ("grad_batch_size 0", PHOTOS + ["--set", "grad_batch_size=0"], 2, "grad_batch_size"),
    ("loader_workers -1", PHOTOS + ["--set", "loader_workers=-1"], 2, "loader_workers"),
    ("one-class model", ["--data", "{photos}", "--arch", "{root}/odd.py:one_class", "--task", "saliency"], 2,
     "at least 2"),
    ("threads 0", PHOTOS + ["--threads", "0"], 2, "--threads"),
    ("threads -1", PHOTOS + ["--threads", "-1"], 2, "--threads"),
    ("input size 0", PHOTOS + ["--input-size", "0"], 2, "--input-size"),
    ("input size 7", PHOTOS + ["--input-size", "7"], 2, "--input-size"),
    ("num classes -3", PHOTOS + ["--num-classes", "-3"], 2, "--num-classes"),
    ("seed -1", PHOTOS + ["--seed", "-1"], 2, "--seed"),
    ("target abc", PHOTOS + ["--target", "abc"], 2, "--target"),
    ("target 11", PHOTOS + ["--target", "11"], 2, "--target"),
    ("cv2 truncated jpeg", ["--data", "{trunc}", "--checkpoint", str(DEMO_CKPT), "--cv2-preprocess", "--task",
                            "saliency"], 2, "cut.jpg"),
    ("nan output", ["--data", "{photos}", "--arch", "{root}/odd.py:nan", "--task", "saliency"], 2, "20240612_101500.jpg"),
    ("std 0", PHOTOS + ["--std", "0,0,0"], 2, "--std"),
    ("batch of one only", ["--data", "{photos}", "--arch", "{root}/odd.py:single", "--task", "saliency"], 2,
     "batch"),
    ("fc layer for filters", PHOTOS[:-1] + ["filters", "--layer", "fc.0"], 2, "--layer fc.0"),
    ("fc layer for deep dream", PHOTOS[:-1] + ["deepdream", "--layer", "fc.0"], 2, "--layer fc.0"),
    ("unknown layer before saliency", PHOTOS[:-1] + ["saliency,gradcam", "--layer", "nope"], 2, "nope"),
    ("filters backwards", PHOTOS[:-1] + ["filters", "--filters", "5-2"], 2, "backwards"),
    ("filters beyond the layer", PHOTOS[:-1] + ["filters", "--filters", "0-9999"], 2, "--filters"),
    ("classes beyond the model", PHOTOS[:-1] + ["classviz", "--classes", "0-40"], 2, "--classes"),
    ("eval split nope", PHOTOS + ["--eval-split", "nope"], 2, "--eval-split"),
    ("validation label 11", ["--data", "{food}", "--checkpoint", str(DEMO_CKPT), "--task", "confusion"], 2,
     "11_1.jpg"),
    ("meta input_size text", ["--data", "{photos}", "--checkpoint", "{root}/meta_input_size.pt"], 2, "input_size"),
    ("meta mean of one", ["--data", "{photos}", "--checkpoint", "{root}/meta_mean.pt"], 2, "mean"),
    ("meta class_names int", ["--data", "{photos}", "--checkpoint", "{root}/meta_class_names.pt"], 2, "class_names"),
    ("train batch size 0", ["--task", "train", "--batch-size", "0"], 2, "--batch-size"),
    ("train limit 0", ["--task", "train", "--limit", "0"], 2, "--limit"),
    ("train epochs 0", ["--task", "train", "--epochs", "0"], 2, "--epochs"),
    ("argparse error", ["--bogus"], 2, "--bogus"),
    ("argparse bad int", ["--seed", "x"], 2, "--seed"),
]


def _files(folder: Path) -> list[Path]:
    """Every file under a folder but Python's bytecode caches."""
    return sorted(p for p in folder.rglob("*") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("case,args,code,word", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_command_line(case, args, code, word, world, tmp_path, capsys):
    """Exit code, one error line naming the flag or file, no traceback, nothing written on refusal."""
    out = tmp_path / "out"
    before = _files(world["root"])
    argv = fill(args, world)
    got = main.main(argv if "--out" in argv else argv + ["--out", str(out)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("weights:", "[", "warning"))]
    assert got == code and "Traceback" not in err, err
    assert not (world["root"] / "evil" / "MARKER").exists()
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("error:") and word in lines[0], err
        assert not out.exists() or not list(out.rglob("*")), list(out.rglob("*"))
        assert _files(world["root"]) == before
        return
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "complete"
    if "--checkpoint" in argv:   # the demo model on phone names: no labels read from them, titles say "true: ?"
        assert [(im["file"], im["label"]) for im in record["images"]] == [("20240612_101500.jpg", -1),
                                                                          ("3_1.jpg", -1)]


def test_trusted_checkpoint_code_runs_with_the_flag(world, tmp_path, capsys):
    """--trust-checkpoint-code runs the file the checkpoint names (here it fails to fit, after the import ran)."""
    code = main.main(["--data", str(world["photos"]), "--checkpoint", str(world["root"] / "evil.pt"),
                      "--trust-checkpoint-code", "--task", "saliency", "--out", str(tmp_path / "out")])
    marker = world["root"] / "evil" / "MARKER"
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    assert code == 2 and ran, capsys.readouterr().err


def test_names_with_commas_can_be_chosen(world, tmp_path):
    """--images takes a file name holding a comma whole; other items split at commas."""
    _jpeg(tmp_path / "a,b.jpg", 6)
    _jpeg(tmp_path / "c.jpg", 7)
    images = dataset.open_split(tmp_path, "images")
    assert dataset.select(images, ["a,b.jpg"]) == [0]
    assert dataset.select(images, ["c.jpg,0"]) == [1, 0]


def test_plain_folders_and_single_files_carry_no_labels(world):
    """Only a Food-11 tree reads labels from file names."""
    assert dataset.open_split(world["photos"], "images").labels == [None, None]
    assert dataset.open_split(world["photos"] / "3_1.jpg", "images").labels == [None]
    assert dataset.open_split(world["food"], "validation").labels == [0, 11]


def _python(args: list[str], **kw) -> subprocess.Popen:
    """main.py in a subprocess."""
    return subprocess.Popen([PY, str(REPO / "main.py"), *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_while_importing_is_one_line():
    proc = _python(["--task", "saliency"])
    time.sleep(1.0)   # torch alone takes seconds to import
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip() == "interrupted", err


def test_sigterm_leaves_only_complete_files(world, tmp_path):
    """SIGTERM during a task: exit 130, no temporary file, run.json says interrupted."""
    out = tmp_path / "out"
    proc = _python(fill(PHOTOS[:-1], world) + ["saliency,smoothgrad", "--set", "smoothgrad_n=200", "--out", str(out)])
    deadline = time.monotonic() + 120
    while not (out / "run.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"


def _hw5(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """bash hw5.sh in a subprocess."""
    return subprocess.run(["bash", str(REPO / "hw5.sh"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=os.environ | env)


def test_hw5_does_not_glob_args_and_takes_one_image(world, tmp_path):
    """HW5_ARGS="--images *" reaches main.py as a literal *; a single image is data, not 'folder not found'."""
    (tmp_path / "stray.txt").write_text("")
    env = {"HW5_CHECKPOINT": str(DEMO_CKPT), "HW5_ARGS": "--images * --task saliency"}
    proc = _hw5([str(world["photos"] / "3_1.jpg"), str(tmp_path / "out")], env, tmp_path)
    assert proc.returncode == 2 and "'*'" in proc.stderr and "stray" not in proc.stderr, proc.stderr


def test_hw5_checksum_of_a_local_file_does_not_say_delete(world, tmp_path):
    env = {"HW5_CHECKPOINT": str(DEMO_CKPT), "HW5_CHECKPOINT_SHA256": "0" * 64}
    proc = _hw5([str(world["photos"]), str(tmp_path / "out")], env, tmp_path)
    assert proc.returncode == 2 and "sha256" in proc.stderr and "delete" not in proc.stderr, proc.stderr


def test_cjk_names_draw_without_warnings(tmp_path):
    """A CJK file or class name: a CJK font when installed, else escaped text; no glyph warnings either way."""
    import draw

    fig, axes = draw.figure(1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draw.show_image(axes[0, 0], np.zeros((8, 8, 3)), draw.caption("汉堡_1.jpg", ["面包", "b"], 0, 0, 0.5, -1))
        draw.save(fig, tmp_path / "cjk.png")
    assert "true: ?" in draw.caption("x.jpg", ["a", "b"], 0, 0, 0.5, -1)


# ---------------------------------------------------------------- the Python API: the same checks

def _net() -> torch.nn.Module:
    """A tiny classifier (3 classes)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()


X = torch.rand(2, 3, 16, 16)
API_CASES = [
    ("uint8 0..255", dict(images=(X * 255).to(torch.uint8)), "255"),
    ("floats 0..255", dict(images=X * 255), "255"),
    ("nan image", dict(images=torch.full((1, 3, 16, 16), float("nan"))), "NaN"),
    ("one channel", dict(images=X[:, :1]), "N x 3 x H x W"),
    ("four channels", dict(images=torch.rand(2, 4, 16, 16)), "N x 3 x H x W"),
    ("target None", dict(target=None), "target"),
    ("target text", dict(target="cat"), "target"),
    ("target out of range", dict(target=3), "target"),
    ("device bogus", dict(device="bogus"), "device"),
    ("smoothgrad n 2.7", dict(method="smoothgrad", n=2.7), "option n"),
    ("seed -1", dict(seed=-1), "seed"),
    ("batch size 0", dict(batch_size=0), "batch_size"),
]


@pytest.mark.parametrize("case,kwargs,word", API_CASES, ids=[c[0] for c in API_CASES])
def test_python_api(case, kwargs, word):
    """Each bad argument raises ExplainInputError naming it."""
    from explain import attribute

    kwargs = {"images": X, "target": 0, "method": "vanilla"} | kwargs
    with pytest.raises(ExplainInputError, match=word):
        attribute(_net(), kwargs.pop("images"), kwargs.pop("target"), kwargs.pop("method"), **kwargs)


def test_deletion_insertion_batch_size():
    from explain import deletion_insertion

    with pytest.raises(ExplainInputError, match="batch_size"):
        deletion_insertion(_net(), X, 0, np.ones((2, 16, 16), np.float32), steps=2, batch_size=-2)
