"""The embedded demo: deterministic data with aligned masks, the committed checkpoint, the train task."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import dataset
import demo
import main
import train


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_byte_identical(demo_data, tmp_path):
    demo.generate(tmp_path / "again")
    again, cached = _tree_bytes(tmp_path / "again"), _tree_bytes(demo_data)
    assert again.keys() == cached.keys()
    assert all(again[k] == cached[k] for k in again)


def test_layout_and_counts(demo_data):
    for split in ("training", "validation"):
        images = dataset.open_split(demo_data, split)
        counts = np.bincount(images.labels, minlength=11)
        assert images.labelled and len(counts) == 11 and counts.min() > 0
        assert counts.min() != counts.max()  # uneven, like Food-11
    testing = dataset.open_split(demo_data, "testing")
    assert not testing.labelled and len(testing) > 0
    sizes = {Image.open(p).size for p in dataset.open_split(demo_data, "validation").paths}
    assert len(sizes) > 20 and any(w != h for w, h in sizes)


def test_masks_cover_the_object(demo_data):
    images = dataset.open_split(demo_data, "validation")
    names = demo.gt_subset(demo_data, per_class=3)
    for name in names:
        i = images.files.index(name)
        img = np.asarray(Image.open(images.paths[i]).convert("RGB"), dtype=np.float32)
        mask = np.asarray(Image.open(images.mask_path(i))) > 127
        assert 0.05 <= mask.mean() <= 0.25, name
        colour = np.array(demo.CLASS_STYLE[images.labels[i]][1], np.float32)
        inside = np.abs(np.median(img[mask], axis=0) - colour).max()
        outside = np.abs(np.median(img[~mask], axis=0) - colour).max()
        assert inside < 70 < outside or inside < outside / 2, (name, inside, outside)


def test_masks_are_exposed_with_the_images(demo_ctx):
    assert demo_ctx.masks is not None and demo_ctx.masks.shape == (4, 128, 128)
    assert all(0.03 < m.mean() < 0.3 for m in demo_ctx.masks)


def test_gt_subset(demo_data):
    names = demo.gt_subset(demo_data)
    assert len(names) == 22 and [dataset.parse_label(n) for n in names] == sorted(list(range(11)) * 2)


def test_committed_checkpoint_is_small_and_accurate(demo_data):
    assert demo.DEMO_CHECKPOINT.stat().st_size <= 10 * 1024 * 1024
    assert train.evaluate_checkpoint(demo.DEMO_CHECKPOINT, demo_data) >= 0.95


def test_short_training_writes_a_self_describing_checkpoint(tmp_path, demo_data, capsys):
    ckpt = tmp_path / "tiny.pt"
    code = main.main(["--task", "train", "--width", "0.125", "--input-size", "64", "--epochs", "1", "--limit", "3",
                      "--batch-size", "16", "--save", str(ckpt), "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    saved = torch.load(ckpt, weights_only=True)
    assert saved["meta"]["arch_options"] == {"width": 0.125} and saved["meta"]["input_size"] == 64
    # the metadata alone configures a later run: no --arch, --width or --input-size given
    code = main.main(["--task", "confusion", "--checkpoint", str(ckpt), "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["input_size"] == 64 and record["checkpoint_meta"]["arch"] == "hw3"
