"""Any classifier: model files carrying weights and meta, torchvision weights, output shapes, no 4-D layer, many
classes, plain folders, seeds, and the memory of a default run on a 1000-class 224-px model."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

import budget
import confusion
import context
import dataset
import deep_dream as dd
import main
import metrics
import model
import occlusion
import seeds
import settings
import tasks
from errors import UserError
from outputs import load_maps

CV = {"lr": 0.15, "l2": 1e-3, "objective": "logprob"}   # the class models' settings

REPO = Path(__file__).resolve().parents[1]
# Sample counts small enough for CI; every task still runs its whole code path.
QUICK = ["--set", "smoothgrad_n=2", "--set", "ig_steps=2", "--set", "filter_count=2", "--set", "filter_steps=2",
         "--set", "robust_steps=2", "--set", "lime_samples=20", "--set", "lime_class_samples=10",
         "--set", "dream_steps=1", "--set", "dream_octaves=1", "--set", "classviz_steps=2",
         "--set", "trust_images=1", "--set", "deletion_steps=2", "--set", "sanity_smoothgrad_n=1",
         "--set", "sanity_ig_steps=1"]


def photos(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """Small JPEG photos with some structure (gradients and a disc), one per size, named IMG_<k>.jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (w, h) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        arr = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 60 * k)], -1)
        arr[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2] = (230, 40, 40)
        Image.fromarray(arr.astype(np.uint8)).save(folder / f"IMG_{k}.jpg", quality=90)
    return folder


def write_file(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def build(tmp: Path, *argv: str) -> context.RunContext:
    return context.build(context.Options.from_args(main.parse_args(["--out", str(tmp / "out"), "--device", "cpu",
                                                                     *argv])))


# ---------------------------------------------------------------- weights and metadata

def test_model_file_carries_its_weights_and_meta(tmp_path, capsys):
    """No --checkpoint needed; one line says where the weights came from; meta sets preprocessing; flags win."""
    f = write_file(tmp_path / "mine.py", """
        import torch
        def build():
            torch.manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                      torch.nn.Flatten(), torch.nn.Linear(4, 3))
            return net, {"input_size": 40, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5], "resize": "crop",
                         "class_names": ["cat", "dog", "fox"]}
        """)
    data = photos(tmp_path / "p", [(60, 40)])
    ctx = build(tmp_path, "--data", str(data), "--arch", f"{f}:build")
    err = capsys.readouterr().err
    assert [ln for ln in err.splitlines() if ln.startswith("weights:")] == [f"weights: the model file {f}:build"]
    assert ctx.input_size == 40 and ctx.class_names == ["cat", "dog", "fox"] and ctx.resize.mode == "crop"
    assert ctx.images.shape == (1, 3, 40, 40)
    assert ctx.model.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    flagged = build(tmp_path, "--data", str(data), "--arch", f"{f}:build", "--input-size", "32", "--mean", "0,0,0",
                    "--resize", "stretch")
    assert flagged.input_size == 32 and flagged.model.mean.abs().sum() == 0 and flagged.resize.mode == "stretch"
    assert flagged.model.std.flatten().tolist() == [0.5, 0.5, 0.5]   # what no flag overrides stays the meta's


def test_checkpoint_loads_on_top_of_a_model_file(tmp_path, capsys):
    f = write_file(tmp_path / "net.py", """
        import torch
        from model import HW3Net
        def make(num_classes=11):
            return HW3Net(num_classes, width=0.125)
        """)
    trained = model.HW3Net(width=0.125)
    ckpt = tmp_path / "c.pt"
    torch.save(trained.state_dict(), ckpt)
    ctx = build(tmp_path, "--data", str(photos(tmp_path / "p", [(50, 50)])), "--arch", f"{f}:make",
                "--checkpoint", str(ckpt))
    assert f"weights: the model file {f}:make, then checkpoint {ckpt} on top" in capsys.readouterr().err
    assert all(torch.equal(a, b) for a, b in zip(ctx.net.state_dict().values(), trained.state_dict().values()))


def test_random_weights_flag_only_for_an_arch_built_by_name(tmp_path, capsys):
    data = photos(tmp_path / "p", [(50, 50)])
    code = main.main(["--data", str(data), "--arch", "resnet18", "--out", str(tmp_path / "o"), "--task", "confusion"])
    line = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(line) == 1 and "--checkpoint" in line[0] and "--weights DEFAULT" in line[0]
    ctx = build(tmp_path, "--data", str(data), "--arch", "resnet18", "--allow-random-weights", "--input-size", "64")
    assert ctx.weights.startswith("none: randomly initialised")


@pytest.mark.parametrize("meta, what", [({"input_sise": 3}, "unknown key 'input_sise'"),
                                        ({"mean": [1, 2]}, "mean must be"), ({"resize": "zoom"}, "resize must be"),
                                        ({"class_names": ["a", "b"]}, "2 class names")])
def test_bad_meta_is_one_line(tmp_path, meta, what):
    f = write_file(tmp_path / "m.py", f"""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3)), {meta!r}
        """)
    with pytest.raises(UserError, match=what):
        build(tmp_path, "--data", str(photos(tmp_path / "p", [(20, 20)])), "--arch", f"{f}:build",
              "--input-size", "16")


def _fake_torchvision_state(monkeypatch):
    """Offline: torchvision's state dict is replaced by a seeded random one of the same architecture."""
    import torchvision

    def fake(w):
        torch.manual_seed(0)
        net = torchvision.models.get_model(w.__class__.__name__.split("_Weights")[0].lower(), weights=None)
        return net.state_dict(), Path("/nowhere") / "fake.pth"
    monkeypatch.setattr(model, "load_torchvision_state", fake)


def test_torchvision_weights_bring_their_transforms_and_categories(tmp_path, capsys, monkeypatch):
    """--arch resnet18 --weights DEFAULT: crop 224 from 256, ImageNet mean/std, 1000 categories, no checkpoint."""
    import torchvision

    _fake_torchvision_state(monkeypatch)
    ctx = build(tmp_path, "--data", str(photos(tmp_path / "p", [(300, 200)])), "--arch", "resnet18",
                "--weights", "DEFAULT")
    w = torchvision.models.ResNet18_Weights.DEFAULT
    assert ctx.class_names == w.meta["categories"] and ctx.num_classes == 1000
    assert ctx.input_size == 224 and ctx.resize == dataset.Resize("crop", 256, "bilinear")
    assert ctx.model.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert ctx.model.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    assert "weights: torchvision ResNet18_Weights.IMAGENET1K_V1" in capsys.readouterr().err
    eff = model.weights_meta(torchvision.models.get_model_weights("efficientnet_b0")["IMAGENET1K_V1"])
    assert eff["interpolation"] == "bicubic" and eff["input_size"] == 224 and eff["resize_size"] == 256
    with pytest.raises(UserError, match="IMAGENET1K_V1"):
        model.torchvision_weights("resnet18", "IMAGENET9K")


def test_torchvision_weights_from_the_hub_cache_and_offline_error(tmp_path, capsys, monkeypatch):
    """A weights file placed in the hub cache loads without network; a missing one exits 2 naming file and place."""
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst, progress=True):
        raise URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    w = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    place = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    data = photos(tmp_path / "p", [(64, 64)])
    code = main.main(["--data", str(data), "--arch", "resnet18", "--weights", "DEFAULT", "--out", str(tmp_path / "o"),
                      "--task", "confusion"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and str(place) in lines[0] and w.url in lines[0]
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    place.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, place)
    built = model.make_network("resnet18", weights="IMAGENET1K_V1")
    assert built.weights == f"torchvision {w} ({place})"
    assert torch.equal(built.net.state_dict()["fc.weight"], state["fc.weight"])


# ---------------------------------------------------------------- outputs, parameter-free and layer-free models

WRAPPERS = """
    import torch
    from model import HW3Net

    class Out:
        def __init__(self, logits):
            self.logits = logits

    class Wrapped(HW3Net):
        kind = "tensor"
        def forward(self, x):
            y = super().forward(x)
            return {"tensor": lambda: y, "tuple": lambda: (y, x.mean()), "list": lambda: [y],
                    "dict": lambda: {"aux": x.mean(), "logits": y}, "object": lambda: Out(y)}[self.kind]()

    def build(kind, num_classes=11):
        net = Wrapped(num_classes, width=0.25)
        net.kind = kind
        return net
    """


def test_every_output_shape_gives_the_bare_models_maps(tmp_path, demo_data):
    """Tuple, list, dict-with-logits and .logits outputs: every task runs and writes the bare tensor model's maps."""
    f = write_file(tmp_path / "wrapped.py", textwrap.dedent(WRAPPERS) + "".join(
        f"\ndef build_{k}(num_classes=11):\n    return build({k!r}, num_classes)\n"
        for k in ("tensor", "tuple", "list", "dict", "object")))
    maps_tasks = "saliency,smoothgrad,ig,gradcam,lime,classviz,occlusion"
    arrays = {}
    for kind in ("tensor", "tuple"):
        out = tmp_path / kind
        names = maps_tasks + (",filters,deepdream,compare,trust" if kind == "tuple" else "")   # every task, once
        code = main.main(["--arch", f"{f}:build_{kind}", "--checkpoint", str(REPO / "checkpoints/demo_hw3_w025.pt"),
                          "--images", "0,300", "--task", names, "--out", str(out), "--device", "cpu", *QUICK,
                          "--classes", "0,5", "--set", "occlusion_patch=64", "--set", "occlusion_stride=64"])
        assert code == 0
        record = json.loads((out / "run.json").read_text())
        assert not any(v.startswith("skipped") for v in record["tasks"].values()), record["tasks"]
        arrays[kind] = {p.stem: load_maps(p)["maps"] for p in sorted((out / "arrays").glob("*.npz"))}
        arrays[kind]["classviz"] = np.array(list(record["results"]["classviz"]["reached"].values()))
    assert set(arrays["tensor"]) >= {"vanilla", "smoothgrad", "integrated_gradients", "gradcam", "lime", "occlusion"}
    assert (tmp_path / "tuple" / "trust.json").is_file() and (tmp_path / "tuple" / "deepdream.png").is_file()
    assert arrays["tuple"].keys() == arrays["tensor"].keys()
    for m, maps in arrays["tensor"].items():
        np.testing.assert_allclose(arrays["tuple"][m], maps, rtol=1e-5, atol=1e-7, err_msg=f"tuple {m}")
    import explain

    for kind in ("list", "dict", "object"):   # the same forward path (Preprocess applies logits_of): one method each
        ctx = build(tmp_path, "--arch", f"{f}:build_{kind}", "--checkpoint", str(REPO / "checkpoints/demo_hw3_w025.pt"),
                    "--images", "0,300")
        maps = explain.attribute(ctx.model, ctx.images, ctx.targets(), "vanilla").maps   # the pipeline's path
        np.testing.assert_allclose(maps, arrays["tensor"]["vanilla"], rtol=1e-5, atol=1e-7, err_msg=kind)


def test_list_output_and_logits_of(demo_model):
    net = model.Preprocess(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)))
    x = torch.rand(1, 3, 2, 2)
    assert net(x).shape == (1, 2)
    with pytest.raises(TypeError, match="expected logits"):
        model.logits_of({"scores": torch.zeros(1)})


class Mean(torch.nn.Module):
    """A parameter-free 'classifier': the three channel means are the logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) * 10


def test_parameter_free_models_run_on_their_device():
    """occlusion, deletion/insertion and class models take the device from a buffer, else the CPU."""
    assert model.device_of(Mean()) == torch.device("cpu")
    meta = torch.nn.Module()
    meta.register_buffer("b", torch.zeros(1, device="meta"))
    assert model.device_of(meta) == torch.device("meta")
    x = torch.rand(2, 3, 16, 16)
    maps = occlusion.occlusion(Mean(), x, np.array([0, 1]), patch=8, stride=8, value=0.5)
    assert maps.shape == (2, 16, 16) and np.isfinite(maps).all()
    ranks = np.stack([metrics.pixel_ranks(m, np.random.default_rng(0)) for m in maps])
    _, probs = metrics.perturbation_curves(Mean(), x, ranks, np.array([0, 1]), "deletion", steps=2)
    assert probs.shape == (2, 3)
    images, probs = dd.class_models(Mean(), [0, 2], 8, [torch.Generator().manual_seed(i) for i in range(2)], steps=2,
                                     lr=0.15, l2=1e-3, objective="logprob")
    assert images.shape == (2, 3, 8, 8) and probs.shape == (2, 3)


def test_no_4d_layer_skips_the_layer_tasks_only(tmp_path, capsys):
    """An MLP: gradcam, filters and deepdream are skipped with one line why; every other task runs."""
    f = write_file(tmp_path / "mlp.py", """
        import torch
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 24 * 24, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 4)), {"input_size": 24}
        """)
    out = tmp_path / "o"
    code = main.main(["--data", str(photos(tmp_path / "p", [(40, 30), (30, 40)])), "--arch", f"{f}:build",
                      "--out", str(out), "--device", "cpu", "--task",
                      "saliency,smoothgrad,ig,gradcam,filters,lime,deepdream,classviz,occlusion,compare,trust", *QUICK])
    err = capsys.readouterr().err
    assert code == 0, err
    tasks = json.loads((out / "run.json").read_text())["tasks"]
    why = "skipped: the network has no layer with a 4-D output, which"
    assert {t for t, v in tasks.items() if v.startswith("skipped")} == {"gradcam", "filters", "deepdream"}
    assert all(tasks[t].startswith(why) for t in ("gradcam", "filters", "deepdream"))
    assert (out / "trust.json").is_file() and (out / "class_models.png").is_file()
    sanity = json.loads((out / "trust.json").read_text())["sanity"]["spearman"]
    assert set(sanity) == {"vanilla", "smoothgrad", "integrated_gradients"}


# ---------------------------------------------------------------- many classes

def test_class_models_pick_bounded_classes_and_leave_parameter_grads_alone(tmp_path, demo_data):
    ctx = build(tmp_path, "--set", "classviz_steps=2", "--images", "83")
    ctx.model.zero_grad(set_to_none=True)
    result = dd.task_classviz(ctx)
    assert all(p.grad is None for p in ctx.model.parameters())
    assert len(result.reached) == 11           # at most 12 classes: all of them
    t, p = np.array([5, 7, 5]), np.array([900, 7, 3])
    assert dd.pick_classes(1000, None, t, p) == [5, 900, 7, 3]
    assert dd.pick_classes(1000, None, np.arange(20), np.arange(20, 40)) == [0, 20, 1, 21, 2, 22, 3, 23, 4, 24, 5, 25]
    assert dd.pick_classes(1000, "3-5,999", t, p) == [3, 4, 5, 999]
    with pytest.raises(UserError, match="1000 classes"):
        dd.pick_classes(1000, "1000", t, p)


def test_class_models_in_chunks_match_one_batch(demo_model):
    """Each image depends only on its generator: chunks give the one-batch images up to float noise (which Adam's
    first, sign-like steps turn into +-lr on the few pixels whose gradient is ~0)."""
    gens = lambda: [torch.Generator().manual_seed(c) for c in range(5)]  # noqa: E731
    one, p1 = dd.class_models(demo_model, list(range(5)), 128, gens(), steps=3, **CV)
    chunked, p2 = dd.class_models(demo_model, list(range(5)), 128, gens(), steps=3, chunk=2, **CV)
    same = (chunked - one).abs() < 1e-4
    assert same.float().mean() > 0.9 and (chunked - one).abs().mean() < 5e-3
    np.testing.assert_allclose(p2[range(5), range(5)], p1[range(5), range(5)], atol=0.05)
    other = dd.class_models(demo_model, [0], 128, [torch.Generator().manual_seed(9)], steps=3, **CV)[0]
    assert (other[0] - one[0]).abs().mean() > 10 * (chunked - one).abs().mean()   # another seed: far apart


def _many_class_tree(root: Path, n_classes: int = 25) -> Path:
    """A tiny labelled Food-11-style tree with n_classes classes (one training and two validation images each)."""
    for split, per in (("training", 1), ("validation", 2)):
        (root / split).mkdir(parents=True)
        for c in range(n_classes):
            for i in range(per):
                v = (c * 37 + i * 11) % 256
                Image.new("RGB", (20, 16), (v, 255 - v, (c * 91) % 256)).save(root / split / f"{c}_{i}.jpg")
    return root


def test_confusion_and_lime_classes_with_many_classes(tmp_path):
    """25 classes: the figures show the most-confused classes and top confusions; the CSV keeps all 25."""
    f = write_file(tmp_path / "wide.py", """
        import torch
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                       torch.nn.Flatten(), torch.nn.Linear(16, 25)), {"input_size": 16}
        """)
    out = tmp_path / "o"
    code = main.main(["--data", str(_many_class_tree(tmp_path / "tree")), "--arch", f"{f}:build", "--out", str(out),
                      "--device", "cpu", "--task", "confusion,lime_classes", "--set", "lime_class_samples=10",
                      "--set", "lime_segments=4", "--set", "loader_workers=0"])
    assert code == 0
    rows = (out / "confusion_matrix.csv").read_text().splitlines()
    assert len(rows) == 26 and len(rows[0].split(",")) == 26
    record = json.loads((out / "run.json").read_text())
    top = record["results"]["confusion"]["top_confusions"]
    assert top and top == sorted(top, key=lambda r: -r["images"])
    assert len(record["results"]["lime_classes"]["classes"]) == confusion.LIME_CLASS_ROWS
    assert (out / "confusion_matrix.png").is_file() and (out / "lime_classes.png").is_file()


def test_top_confusions_and_confused_classes():
    counts = np.diag([5] * 30)
    counts[3, 7], counts[9, 2], counts[9, 7] = 4, 6, 4
    assert confusion.top_confusions(counts, 3) == [(9, 2, 6), (3, 7, 4), (9, 7, 4)]
    picked = confusion.confused_classes(counts, 5)
    assert len(picked) == 5 and {2, 3, 7, 9} <= set(picked)
    assert confusion.most_missed(counts, 2) == [9, 3]


# ---------------------------------------------------------------- planner, seeds

def test_planner_counts_what_the_data_runs(tmp_path, capsys, monkeypatch):
    """No confusion or lime_classes cost without a labelled validation split; class tasks bounded for 1000 classes."""
    s = settings.resolve("cpu")
    assert budget.passes("classviz", s, 4, 1000, 0) == budget.passes("classviz", s, 4, 12, 0)
    assert budget.passes("lime_classes", s, 4, 1000, 50000)[0] == 2 * confusion.LIME_CLASS_ROWS * s["lime_class_samples"]
    assert budget.passes("classviz", s, 4, 1000, 0, n_classviz=3)[1] == 1.5 * 3 * s["classviz_steps"]
    assert budget.passes("occlusion", s, 1, 11, 0, size=224)[0] == 18 ** 2
    data = photos(tmp_path / "p", [(40, 40)] * 2)
    ctx = build(tmp_path, "--data", str(data), "--arch", "hw3", "--width", "0.125", "--allow-random-weights")
    skipped = budget.will_skip(ctx, tasks.default_tasks())
    assert set(skipped) == {"confusion", "lime_classes"} and "not a Food-11 tree" in skipped["confusion"]
    monkeypatch.setattr(budget, "DEFAULT_SECONDS", 0.01)
    budget.apply(ctx, tasks.default_tasks(), None)
    err = capsys.readouterr().err
    assert "(skipped: confusion, lime_classes)" in err
    assert "confusion" not in ctx.cache["budget_prediction"] and "classviz" in ctx.cache["budget_prediction"]


def test_file_names_sharing_16_characters_get_different_lime_seeds():
    a, b = "IMG_20230101_123456.jpg", "IMG_20230101_123457.jpg"
    assert a[:16] == b[:16]
    assert seeds.seed_int(0, "lime", a, bits=31) != seeds.seed_int(0, "lime", b, bits=31)
    assert seeds.seed_int(0, "lime", a) == seeds.seed_int(0, "lime", a)


# ---------------------------------------------------------------- plain folders

def test_plain_folder_explains_every_image_up_to_8_and_all(tmp_path):
    data = photos(tmp_path / "p", [(30 + k, 30) for k in range(10)])
    ctx = build(tmp_path, "--data", str(data), "--arch", "hw3", "--width", "0.125", "--allow-random-weights")
    assert ctx.files == [f"IMG_{k}.jpg" for k in range(8)]
    ctx = build(tmp_path, "--data", str(data), "--arch", "hw3", "--width", "0.125", "--allow-random-weights",
                "--images", "all")
    assert len(ctx.files) == 10


# ---------------------------------------------------------------- memory of a default run on a 1000-class model

IMAGENET_FILE = """
    import torch
    import torchvision

    def build():
        torch.manual_seed(0)
        # random weights, made here; squeezenet1_1: 26 parameterised layers keep the sanity check's cascade short
        net = torchvision.models.squeezenet1_1(weights=None, num_classes=1000)
        return net, {"input_size": 224, "resize": "crop", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                     "class_names": [f"imagenet class {i}" for i in range(1000)]}
    """
CHILD = """
import resource, sys
sys.path.insert(0, {repo!r})
import main
code = main.main({argv!r})
peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(f"PEAK_KB {{peak}}")
sys.exit(code)
"""


def test_default_run_on_a_1000_class_224px_model_fits_in_2_gib(tmp_path):
    """The whole default task list on 3 photos with a model file (squeezenet1_1, 1000 classes, 224 px) and no
    checkpoint, at reduced sample counts: every photo in the figures, the child's peak RSS <= 2 GiB."""
    f = write_file(tmp_path / "imagenet_model.py", IMAGENET_FILE)
    data = photos(tmp_path / "photos", [(320, 240), (240, 320), (256, 256)])
    out = tmp_path / "out"
    argv = ["--data", str(data), "--arch", f"{f}:build", "--out", str(out), "--device", "cpu", *QUICK,
            "--set", "occlusion_patch=112", "--set", "occlusion_stride=112"]
    proc = subprocess.run([sys.executable, "-c", CHILD.format(repo=str(REPO), argv=argv)], capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_gib = int(proc.stdout.split("PEAK_KB ")[1].split()[0]) / 2 ** 20
    record = json.loads((out / "run.json").read_text())
    files = [f"IMG_{k}.jpg" for k in range(3)]
    assert [im["file"] for im in record["images"]] == files
    assert record["weights"] == f"the model file {f}:build" and len(record["class_names"]) == 1000
    assert {t for t, v in record["tasks"].items() if v.startswith("skipped")} == {"confusion", "lime_classes"}
    for m in ("vanilla", "smoothgrad", "integrated_gradients", "gradcam", "lime", "occlusion"):
        assert list(load_maps(out / "arrays" / f"{m}.npz")["files"]) == files
    for png in ("saliency", "gradcam", "lime", "deepdream", "class_models", "occlusion", "attribution_comparison",
                "filter_visualization", "trust_curves"):
        assert (out / f"{png}.png").is_file(), png
    assert len(record["results"]["classviz"]) <= 6   # the 3 photos' target and predicted classes
    assert peak_gib <= 2.0, f"peak RSS {peak_gib:.2f} GiB"
