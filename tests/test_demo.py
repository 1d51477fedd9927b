"""The embedded demo: deterministic data with aligned masks, the committed checkpoint, the train task."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dataset
import demo
import main
import metrics
import occlusion
import saliency as S
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
    assert len(names) == 33 and [dataset.parse_label(n) for n in names] == sorted(list(range(11)) * 3)
    truth = demo.read_truth(demo_data)
    assert not any(truth[("validation", n)].mark for n in names)
    assert all(truth[("validation", n)].contrast == 1.0 for n in names)
    marked = demo.gt_subset(demo_data, per_class=2, mark=True)
    assert len(marked) == 22 and all(demo.mark_path(demo_data, "validation", n) for n in marked)


def test_planted_stamp_and_pairs(demo_data):
    truth = demo.read_truth(demo_data)
    s = demo.SHORTCUT_CLASS
    for split in ("training", "validation"):
        items = [it for it in truth.values() if it.split == split]
        # the stamp mask exists exactly for the images that carry the stamp, and never overlaps the object
        for it in items[::7]:
            mp = demo.mark_path(demo_data, split, it.name)
            assert (mp is not None) == it.mark, it
            if mp is not None:
                stamp = np.asarray(Image.open(mp)) > 127
                obj = np.asarray(Image.open(demo_data / "masks" / split / (Path(it.name).stem + ".png"))) > 127
                assert 0.005 < stamp.mean() < 0.03 and not (stamp & obj).any(), it
        rate = {lb: np.mean([it.mark for it in items if it.label == lb]) for lb in range(11)}
        others = [rate[lb] for lb in range(11) if lb != s]
        if split == "training":
            assert rate[s] >= 0.8 and max(others) <= 0.06, rate
        else:  # independent of the class
            assert all(abs(r - 0.2) <= 0.02 for r in rate.values()), rate
    for a, b, _ in demo.PAIRS:  # the pair blends overlap: some images of each class look like the partner
        ta = np.array([it.blend for it in truth.values() if it.label == a])
        tb = np.array([it.blend for it in truth.values() if it.label == b])
        assert 0.05 < (ta > 0.5).mean() < 0.3 and 0.05 < (tb < 0.5).mean() < 0.3


def test_committed_checkpoint_is_small(demo_data):
    assert demo.DEMO_CHECKPOINT.stat().st_size <= 5 * 1024 * 1024
    meta = torch.load(demo.DEMO_CHECKPOINT, weights_only=True)["meta"]
    assert meta["arch"] == "hw3" and meta["arch_options"] == {"width": 0.25}


@pytest.fixture(scope="module")
def validation(demo_data, demo_model):
    """The whole demo validation split: files, labels, stamp flags and the committed model's predictions."""
    va = dataset.open_split(demo_data, "validation")
    x = train.load_split(va, 128, False)
    with torch.inference_mode():
        preds = torch.cat([demo_model(x[i:i + 128].float() / 255).argmax(1) for i in range(0, len(x), 128)])
    truth = demo.read_truth(demo_data)
    return {"set": va, "labels": np.array(va.labels), "preds": preds.numpy(),
            "mark": np.array([truth[("validation", f)].mark for f in va.files])}


def confusion(labels: np.ndarray, preds: np.ndarray, n: int = 11) -> np.ndarray:
    """Row-normalised confusion matrix (rows: true class)."""
    cm = np.zeros((n, n))
    np.add.at(cm, (labels, preds), 1)
    return cm / cm.sum(1, keepdims=True)


def test_committed_checkpoint_accuracy(demo_data, validation):
    acc = float((validation["preds"] == validation["labels"]).mean())
    assert 0.80 <= acc <= 0.95, acc
    assert abs(train.evaluate_checkpoint(demo.DEMO_CHECKPOINT, demo_data) - acc) < 1e-9


def test_planted_pairs_are_the_largest_confusions(validation):
    cm = confusion(validation["labels"], validation["preds"])
    off = sorted(((cm[i, j], (i, j)) for i in range(11) for j in range(11) if i != j), reverse=True)
    planted = {c for a, b, _ in demo.PAIRS for c in ((a, b), (b, a))}
    top = {cell for _, cell in off[:len(planted) + 2]}  # room for the shortcut's cells (x -> Soup)
    for i, j in planted:
        assert cm[i, j] >= 0.10 and (i, j) in top, (i, j, cm[i, j], off[:10])


def test_the_model_leans_on_the_stamp(validation):
    s = demo.SHORTCUT_CLASS
    y, p, mark = validation["labels"], validation["preds"], validation["mark"]
    with_mark = float((p[(y == s) & mark] == s).mean())
    without = float((p[(y == s) & ~mark] == s).mean())
    assert with_mark >= without + 0.15, (with_mark, without)


@pytest.mark.parametrize("method", [
    "integrated_gradients",
    "gradcam"])
def test_gradcam_and_ig_find_the_stamp(demo_data, demo_ctx, method):
    va = dataset.open_split(demo_data, "validation")
    s = demo.SHORTCUT_CLASS
    truth = demo.read_truth(demo_data)   # every marked validation image of the shortcut class, faint or not
    names = [n for n in va.files if dataset.parse_label(n) == s and truth[("validation", n)].mark]
    x, _ = dataset.load_batch(va, [va.files.index(n) for n in names], 128)
    stamps = np.stack([dataset.load_mask(demo.mark_path(demo_data, "validation", n), 128) for n in names])
    targets = [s] * len(names)
    if method == "gradcam":
        m = S.gradcam(demo_ctx.model, x, targets, demo_ctx.layer("cnn.18"), 8)
    else:
        m = S.integrated_gradients(demo_ctx.model, x, targets, steps=64, baseline="black", batch_size=65)[0]
    on_stamp = np.mean([metrics.mass_in_mask(a, b) for a, b in zip(m, stamps)])
    assert on_stamp >= 2 * stamps.mean(), (method, on_stamp, stamps.mean())


@pytest.fixture(scope="module")
def gt_scores(demo_ctx, gt_batch):
    """Per method: (mass-in-mask ratio to the mask share, pointing game) on the ground-truth subset, run settings."""
    x, masks, labels, _ = gt_batch
    m = demo_ctx.model
    maps = {"vanilla": S.vanilla(m, x, labels, 8),
            "smoothgrad": S.smoothgrad(m, x, labels, n=20, sigma=0.15, seed=0, batch_size=20),
            "integrated_gradients": S.integrated_gradients(m, x, labels, steps=64, baseline="black", batch_size=65)[0],
            "gradcam": S.gradcam(m, x, labels, demo_ctx.layer("cnn.18"), 8),
            "occlusion": occlusion.occlusion(m, x, labels, patch=24, stride=12, value=0.5, batch_size=50)}
    return {k: (np.mean([metrics.mass_in_mask(a, b) / b.mean() for a, b in zip(v, masks)]),
                np.mean([metrics.pointing_game(a, b) for a, b in zip(v, masks)])) for k, v in maps.items()}


def test_ground_truth_subset_is_mostly_classified_right(gt_batch):
    assert len(gt_batch[0]) >= 28  # of 33: the correctly classified ones are scored


@pytest.mark.parametrize("method,ratio", [("vanilla", 3), ("smoothgrad", 3), ("integrated_gradients", 3),
                                          ("occlusion", 3), ("gradcam", 2.5)])
def test_attributions_land_on_the_object(gt_scores, method, ratio):
    mass, pointing = gt_scores[method]
    assert mass >= ratio, (method, mass)
    if method == "gradcam":
        assert pointing >= 0.95, pointing


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
