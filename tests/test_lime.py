"""LIME: reproducible, order-independent, finds the object, explains any class, covers every superpixel."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import make_ctx
from lime.lime_image import LimeImageExplainer

import demo
import lime_explain as L
from errors import Skipped
from model import Autocast
from outputs import load_maps

FEW = 60   # samples for the tests that allow fewer than the default 1000


def _fn(ctx, precision: str = "fp32"):
    model = ctx.model if precision == "fp32" else Autocast(ctx.model, ctx.device)
    return L.classifier(model, ctx.settings["lime_batch_size"])


def _all(ctx, n: int) -> list[list[int]]:
    """Every class explained, for n images."""
    return [list(range(ctx.num_classes))] * n


def _seg(ctx):
    s = ctx.settings
    return L.segmenter(s["lime_segments"], s["lime_compactness"], s["lime_sigma"])


def test_two_runs_identical_weights_and_figures(demo_data, tmp_path):
    """Default settings (1000 samples), one image: a rerun writes byte-identical arrays and figures."""
    outs = []
    for run in ("a", "b"):
        ctx = make_ctx(tmp_path / run, "--images", "0")
        assert ctx.settings["lime_samples"] == 1000
        outs.append({p.name: p.read_bytes() for p in L.task_lime(ctx).files})
    assert set(outs[0]) == {"lime.npz", "lime.png", "lime_details.png"}
    for name in outs[0]:
        assert outs[0][name] == outs[1][name], name
    maps = load_maps(tmp_path / "a" / "arrays" / "lime.npz")
    assert maps["maps"].shape == (1, 128, 128) and np.abs(maps["maps"]).max() > 0


def test_same_alone_or_after_others(demo_ctx):
    """An image's explanation does not depend on which images were explained before it."""
    files = demo_ctx.files[:2]
    seeds = [L.image_seed(demo_ctx.seed, f) for f in files]
    both = L.explain_images(_fn(demo_ctx), demo_ctx.images[:2], seeds, _all(demo_ctx, 2), FEW, 4, _seg(demo_ctx))
    alone = L.explain_images(_fn(demo_ctx), demo_ctx.images[1:2], seeds[1:], _all(demo_ctx, 1), FEW, 4,
                             _seg(demo_ctx))
    c = int(demo_ctx.targets()[1])
    np.testing.assert_array_equal(L.superpixel_weights(both[1], c), L.superpixel_weights(alone[0], c))
    assert seeds[0] != seeds[1]


def test_matches_stock_lime(demo_ctx):
    """Our vectorised perturbations and skipped feature selection give stock lime's explanation (to rounding)."""
    img = np.ascontiguousarray(demo_ctx.images[0].permute(1, 2, 0).numpy())
    kw = dict(top_labels=demo_ctx.num_classes, num_samples=40, batch_size=4, segmentation_fn=_seg(demo_ctx))
    ours = L.SeededExplainer(random_state=7).explain_instance(img, _fn(demo_ctx), **kw)
    stock = LimeImageExplainer(random_state=7).explain_instance(img, _fn(demo_ctx), **kw)
    for c in range(demo_ctx.num_classes):
        w_ours, w_stock = L.superpixel_weights(ours, c), L.superpixel_weights(stock, c)
        np.testing.assert_allclose(w_ours, w_stock, rtol=0, atol=1e-9 * np.abs(w_stock).max())


def test_top_superpixels_lie_on_the_object(demo_ctx, gt_batch):
    """Top-3 positive superpixels of the true class: their area inside the mask is >= 3x the mask's share."""
    images, masks, labels, files = gt_batch
    exps = L.explain_images(_fn(demo_ctx), images, [L.image_seed(demo_ctx.seed, f) for f in files],
                            [[int(c)] for c in labels], FEW, 8, _seg(demo_ctx))
    inside, share = [], []
    for e, m, c in zip(exps, masks, labels):
        top = np.isin(e.segments, L.top_superpixels(e, c, +1, k=3))
        inside.append((top & m).sum() / top.sum())
        share.append(m.mean())
    assert np.mean(inside) >= 3 * np.mean(share), (np.mean(inside), np.mean(share))


def test_lowest_ranked_class_and_every_superpixel(demo_ctx):
    """The class the model ranks last can be explained; every SLIC id 0..K-1 gets a weight for every class."""
    exp = L.explain_images(_fn(demo_ctx), demo_ctx.images[:1], [1], _all(demo_ctx, 1), FEW, 4, _seg(demo_ctx))[0]
    low = int(demo_ctx.probs()[0].argmin())
    k = int(exp.segments.max()) + 1
    np.testing.assert_array_equal(np.unique(exp.segments), np.arange(k))
    assert k > 20
    for c in range(demo_ctx.num_classes):
        assert sorted(f for f, _ in exp.local_exp[c]) == list(range(k))
    m = L.weight_maps([exp], [low])
    assert m.shape == (1, 128, 128) and np.isfinite(m).all() and np.abs(m).max() > 0
    assert L.course_overlay(exp, low).shape == (128, 128, 3)


def test_bf16_probabilities(demo_ctx):
    """--precision bf16 still returns probabilities close to fp32's."""
    x = demo_ctx.images[:2].permute(0, 2, 3, 1).numpy()
    p32, p16 = _fn(demo_ctx)(x), _fn(demo_ctx, "bf16")(x)
    assert p16.dtype == np.float32 and np.allclose(p16.sum(1), 1, atol=1e-4)
    assert np.abs(p16 - p32).max() < 0.1 and (p16.argmax(1) == p32.argmax(1)).all()


def test_pick_examples_skips_missing_wrong():
    """Most confident correct/wrong per class; -1 when a class has no wrong (or no) image."""
    labels = np.array([0, 0, 0, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    assert L.pick_examples(labels, probs, 3) == [(0, 2), (3, -1), (-1, -1)]


def test_classes_figure_with_and_without_wrong(demo_ctx, tmp_path):
    """lime_classes.png draws a wrong panel when there is one and a note when there is none."""
    exp = L.explain_images(_fn(demo_ctx), demo_ctx.images[:1], [3], _all(demo_ctx, 1), 20, 4, _seg(demo_ctx))[0]
    ex = {"image": demo_ctx.images[0], "exp": exp, "pred": 1, "true": 0, "file": "x.jpg", "caption": "x.jpg"}
    rows = [{"cls": 0, "accuracy": 0.5, "confused": 1, "correct": dict(ex, pred=0), "wrong": ex},
            {"cls": 1, "accuracy": float("nan"), "confused": -1, "correct": None, "wrong": None}]
    path = L.draw_classes(rows, demo_ctx.class_names, "t", tmp_path / "lime_classes.png")
    assert path.stat().st_size > 10_000


def test_classes_skipped_without_labelled_split(demo_data, tmp_path):
    """A folder of loose images has no labelled validation split: the task is skipped, not failed."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(next((demo_data / "validation").glob("*.jpg")), folder / "photo.jpg")
    ctx = make_ctx(tmp_path / "out", "--data", str(folder), "--checkpoint", str(demo.DEMO_CHECKPOINT))
    with pytest.raises(Skipped):
        L.task_lime_classes(ctx)


def test_unsupported_precision_is_a_user_error():
    from errors import UserError
    from model import autocast
    with pytest.raises(UserError):
        autocast(torch.device("cpu"), "fp8")


def test_lime_classes_explain_the_images_the_predictions_came_from(tmp_path):
    """Under --resize crop the per-class LIME images are cropped as the predictions' images were, not stretched."""
    import context
    import dataset
    import main
    from PIL import Image

    root = tmp_path / "tree"
    for split in ("training", "validation"):
        (root / split).mkdir(parents=True)
        for c in range(2):
            for i in range(2):
                arr = np.zeros((24, 48, 3), np.uint8)       # wide: a crop keeps the middle, a stretch squeezes it
                arr[:, :12] = (200, 30 * i, 40 * c)
                arr[:, 12:36] = (20, 160, 60 + 90 * c)
                Image.fromarray(arr).save(root / split / f"{c}_{i}.png")
    net = tmp_path / "net.py"
    net.write_text("import torch\ndef build():\n    torch.manual_seed(0)\n"
                   "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),"
                   " torch.nn.Flatten(), torch.nn.Linear(16, 2)), {'input_size': 16}\n")
    ctx = context.build(context.Options.from_args(main.parse_args(
        ["--data", str(root), "--arch", f"{net}:build", "--out", str(tmp_path / "out"), "--device", "cpu",
         "--resize", "crop", "--set", "lime_class_samples=10", "--set", "lime_segments=4",
         "--set", "loader_workers=0"])))
    seen = {}
    attribute = ctx.attribute

    def spy(method, images=None, *args, **kwargs):
        if images is not None:
            seen["images"] = images
        return attribute(method, images, *args, **kwargs)

    ctx.attribute = spy
    L.task_lime_classes(ctx)
    split = ctx.eval_predictions()["images"]
    cropped, _ = dataset.load_batch(split, list(range(len(split.files))), 16, False, ctx.resize)
    assert any(torch.equal(seen["images"][0], img) for img in cropped)
