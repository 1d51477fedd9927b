"""The report: report.pdf parses, has a page per section with every produced figure in it, its sentences carry
this run's numbers, report.html references only files that exist, and missing pieces never crash it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pypdf
import pytest
from PIL import Image

from conftest import REPO
from outputs import save_maps, write_csv, write_json
from report import build
from report.figures import FIGURES
from report.q3_lime import confusion_sentences, lime_sentences
from report.sections import build_report
from report.trust_text import gain_sentences, sanity_sentence, trust_table

NAMES = ["Bread", "Dessert", "Soup"]
COUNTS = np.array([[8, 1, 1],     # Bread 0.80
                   [3, 6, 1],     # Dessert 0.60, most often predicted as Bread (3): the top confusion
                   [0, 1, 19]])   # Soup 0.95
TRUST = {"mode": "cheap", "sanity": {"threshold": 0.5},
         "methods": {m: {"deletion_auc": {"mean": d, "std": 0.01, "n": 4},
                         "insertion_auc": {"mean": i, "std": 0.02, "n": 4},
                         "sanity_spearman": {"mean": sp, "std": 0.1, "n": 1} if sp is not None else
                         {"mean": None, "std": None, "n": 0},
                         "sanity_check": v}
                     for m, d, i, sp, v in [("gradcam", 0.123, 0.812, 0.21, "passes"),
                                            ("vanilla", 0.205, 0.644, 0.73, "fails sanity check"),
                                            ("random", 0.311, 0.402, None, "not applicable")]}}
IMAGES = [{"file": f"{c}_0.jpg", "index": c, "label": c, "pred": c, "target": c} for c in range(3)]
TALL = "lime_classes.png"


def fake_png(path: Path, width: int, height: int) -> None:
    """A PNG with a distinct size (so the test can find it in the PDF) and white gaps between bands of colour."""
    img = np.full((height, width, 3), 255, np.uint8)
    for top in range(0, height, 150):
        img[top + 10:top + 140, 10:width - 10] = (40 + top % 200, 90, 160)
    Image.fromarray(img).save(path)


def make_folder(out: Path, with_record: bool = True) -> dict[str, tuple[int, int]]:
    """An output folder shaped like DESIGN.md's contract; returns {figure file: (width, height)}."""
    out.mkdir(parents=True, exist_ok=True)
    # shortcut.png is drawn only beside where's record of its images on data with a planted stamp (test_shortcut.py)
    names = [n for n in FIGURES if n != "shortcut.png"] + ["filter_visualization_cnn.14.png"]
    sizes = {name: (300 + 7 * k, 4800 if name == TALL else 240) for k, name in enumerate(names)}
    for name, (w, h) in sizes.items():
        fake_png(out / name, w, h)
    write_csv(out / "confusion_matrix.csv", ["true \\ predicted"] + NAMES,
              [[n] + list(map(int, r)) for n, r in zip(NAMES, COUNTS)])
    write_json(out / "trust.json", TRUST)
    save_maps(out, "vanilla", np.zeros((3, 8, 8)), [im["file"] for im in IMAGES], np.arange(3), np.arange(3))
    if with_record:
        write_json(out / "run.json", {
            "command": "python main.py --out fake", "seed": 7, "arch": "hw3", "input_size": 128,
            "class_names": NAMES, "data": "/data/food", "checkpoint": "ck.pt", "checkpoint_sha256": "ab" * 32,
            "versions": {"python": "3.11", "torch": "2.x"}, "settings": {"ig_steps": 64, "lime_samples": 1000},
            "images": IMAGES, "timings": {"setup": 0.5, "saliency": 2.25, "confusion": 3.0},
            "tasks": {"setup": "3 images", "saliency": ", ".join(n for n in sizes if n != "occlusion.png"),
                      "confusion": "confusion_matrix.csv"},
            "files": {"saliency": [n for n in sizes if n != "occlusion.png"] + ["trust.json"],
                      "confusion": ["confusion_matrix.csv"]},
            "results": {"ig": {"steps": 64, "baseline": "black", "gap_mean": 0.0123, "gap_max": 0.0456},
                        "classviz": {"Bread": 0.97, "Dessert": 0.55, "Soup": 0.99},
                        "filters": {"layers": {"cnn.6": {"filters": [0, 1], "plain_activation": [2.0, 4.0],
                                                         "noise_activation": [0.5, 0.5]},
                                               "cnn.14": {"filters": [0], "plain_activation": [1.0]}}}}})
    return sizes


def pdf_pages(path: Path) -> list[tuple[str, list[tuple[int, int]]]]:
    """Per page: its text and the (width, height) of every image drawn on it."""
    pages = []
    for page in pypdf.PdfReader(path).pages:
        xobjects = page["/Resources"].get("/XObject", {})
        drawn = re.findall(rb"/([\w.]+)\s+Do", page.get_contents().get_data())
        sizes = [(int(xobjects["/" + n.decode()]["/Width"]), int(xobjects["/" + n.decode()]["/Height"]))
                 for n in drawn if "/" + n.decode() in xobjects]
        pages.append((page.extract_text(), sizes))
    return pages


class Refs(HTMLParser):
    """Collects every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def html_refs(path: Path) -> list[str]:
    """Every src and href in an HTML file."""
    p = Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p.refs


def assert_html_refs_exist(out: Path) -> list[str]:
    """Every reference is an in-page anchor or a relative name of an existing file in out."""
    refs = html_refs(out / "report.html")
    files = [r for r in refs if not r.startswith("#")]
    for r in files:
        assert "://" not in r and not r.startswith("/"), r
        assert (out / r).is_file(), f"report.html references missing {r}"
    return files


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]]]:
    """A complete fake folder with its report built standalone."""
    out = tmp_path_factory.mktemp("full")
    sizes = make_folder(out)
    assert build.main([str(out)]) == 0
    return out, sizes


def test_pdf_has_its_sections_in_order_with_their_figures(full):
    out, sizes = full
    pages = pdf_pages(out / "report.pdf")
    report = build_report(out, json.loads((out / "run.json").read_text()))
    text = re.sub(r"\s+", " ", " ".join(t for t, _ in pages)).replace(" ", "")
    starts = []
    for section in report.sections:
        head = section.title.replace(" ", "")
        assert head in text, f"section {section.title!r} not in the PDF"
        starts.append(text.index(head))
    assert starts == sorted(starts)
    bounds = starts + [len(text)]
    for k, section in enumerate(report.sections):
        for fig in section.figures:
            at = text.find(f"({fig.file})", bounds[k])
            assert bounds[k] <= at < bounds[k + 1], f"{fig.file} is not drawn in its section"
    drawn = {f.file for s in report.sections for f in s.figures}
    assert drawn == set(sizes) - {"occlusion.png"}, f"figures left out: {set(sizes) - drawn}"  # the run's files only
    images = [size for _, imgs in pages for size in imgs]
    assert len(images) == len(drawn), "each figure drawn once"
    small = [sizes[f] for f in drawn if f != TALL]
    assert all(size in images for size in small), "small figures keep their pixels"


def test_sentences_carry_this_runs_numbers(full):
    out, _ = full
    text = " ".join(t for t, _ in pdf_pages(out / "report.pdf"))
    text = re.sub(r"\s+", " ", text)
    # this trust.json has means but no paired comparison: nobody is better than random, n = 1 gives no verdict
    assert "no paired comparison with random: no method is called better than random" in text
    assert "Better than random" not in text
    assert "too few images (no verdict): Grad-CAM and Vanilla gradient" in text
    assert "0.123 (n = 4, no interval)" in text
    acc = np.trace(COUNTS) / COUNTS.sum()
    assert f"({COUNTS.sum()} images) the model's accuracy is {acc:.3f}" in text
    assert "most accurate on Soup (0.95) and least accurate on Dessert (0.60)" in text
    assert "most often confuses Dessert with Bread: 3 of the 10 Dessert images" in text
    assert "by 1.23% on average and 4.56% at most" in text
    assert "from 0.550 (Dessert) to 0.990 (Soup)" in text
    assert "Layer cnn.6, 2 filters: the plain images reach a mean activation of 3.000" in text
    assert "ab" * 32 in text and "Settings that differ from the defaults" in text
    assert "python main.py --out fake" not in text and "/data/food" not in text   # no command, no machine path


def test_html_references_only_existing_files(full):
    out, sizes = full
    files = assert_html_refs_exist(out)
    assert set(sizes) - {"occlusion.png"} <= set(files), "every figure of the run is on the page"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "most often confuses Dessert with Bread" in html


def test_missing_pieces_are_noted_and_rebuilds_are_identical(tmp_path):
    out = tmp_path / "out"
    make_folder(out)
    for name in ("trust.json", "gradcam.png", "lime.png"):
        (out / name).unlink()
    assert build.main([str(out)]) == 0
    first = (out / "report.pdf").read_bytes(), (out / "report.html").read_bytes()
    assert build.main([str(out)]) == 0
    assert first == ((out / "report.pdf").read_bytes(), (out / "report.html").read_bytes())
    text = re.sub(r"\s+", " ", " ".join(t for t, _ in pdf_pages(out / "report.pdf")))
    assert "trust.json is not in this output folder" in text
    assert "gradcam.png is not in this output folder" in text
    refs = assert_html_refs_exist(out)
    assert "gradcam.png" not in refs
    assert "occlusion.png" not in refs and (out / "occlusion.png").is_file()   # on disk, but not written by this run


def test_without_run_record_the_report_refuses(tmp_path, capsys):
    make_folder(tmp_path, with_record=False)
    assert build.main([str(tmp_path)]) == 2
    assert "run.json not found" in capsys.readouterr().err and not (tmp_path / "report.pdf").exists()
    assert build.main([str(tmp_path / "nope")]) == 2


def test_confusion_sentences_ties_and_perfect():
    names = ["A", "B"]
    assert confusion_sentences(names, np.array([[5, 0], [0, 3]]), "validation") == [
        "On the validation split (8 images) the model's accuracy is 1.000.",
        "Its accuracy is the same on all 2 classes with images (1.00).", "No image of the split is misclassified."]


def test_lime_sentence_from_the_lime_record():
    text = lime_sentences({"samples": 1000, "superpixels": {"a.jpg": 80, "b.jpg": 91},
                           "local_fit_r2": {"a.jpg": 0.5, "b.jpg": 0.7}})[0]
    assert "R^2 from 0.50 to 0.70 (mean 0.60) over the 2 selected images, using 80 to 91 superpixels" in text


def test_trust_table_reads_numbers_and_skips_empty_means():
    t = trust_table(TRUST)
    assert t["gradcam"]["deletion_auc"] == (0.123, None, None, 4)
    assert "sanity_spearman" not in t["random"]
    assert trust_table({"methods": {}}) == {}


@pytest.mark.usefixtures("demo_data")
def test_saliency_only_run_builds_a_shorter_report(tmp_path, full):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "--task", "saliency,report", "--out", str(out),
                           "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((out / "run.json").read_text())
    pages = pdf_pages(out / "report.pdf")
    assert len(pages) < len(pdf_pages(full[0] / "report.pdf"))
    text = re.sub(r"\s+", " ", " ".join(t for t, _ in pages))
    squeezed = re.sub(r"\s+", "", text)        # long table cells wrap inside words
    assert record["checkpoint_sha256"] in squeezed
    assert "task lime not run" in text and "trust.json is not in this output folder" in text
    w, h = Image.open(out / "saliency.png").size
    drawn = [s for _, imgs in pages for s in imgs]   # resampled to print resolution: the same aspect ratio
    assert any(abs(dw / dh - w / h) < 0.01 * w / h for dw, dh in drawn), (w, h, drawn)
    assert "saliency.png" in assert_html_refs_exist(out)
    assert f"saliency {record['timings']['saliency']:.1f}" not in text      # timings: report.html only
    assert f"<td>saliency</td><td>{record['timings']['saliency']:.1f}</td>" in (out / "report.html").read_text()


def test_module_entry_point(tmp_path):
    make_folder(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "report.build", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "report.pdf").stat().st_size > 0
    shutil.rmtree(tmp_path)


def test_every_embedded_image_decodes_to_its_figure(full):
    """Each image object in report.pdf is a JPEG a viewer can decode, and it shows the figure's pixels, not a blank."""
    out, sizes = full
    reader = pypdf.PdfReader(out / "report.pdf")
    seen = 0
    for page in reader.pages:
        for ref in (page["/Resources"].get("/XObject") or {}).values():
            obj = ref.get_object()
            if obj.get("/Subtype") != "/Image":
                continue
            raw = obj._data                      # the stream's bytes exactly as stored in the file
            filters = obj["/Filter"] if isinstance(obj["/Filter"], list) else [obj["/Filter"]]
            assert list(filters) == ["/DCTDecode"] and raw[:2] == b"\xff\xd8", "not a plain JPEG stream"
            with Image.open(__import__("io").BytesIO(raw)) as im:
                pixels = np.asarray(im.convert("RGB"), np.float32)
            assert (im.width, im.height) == (obj["/Width"], obj["/Height"])
            # fake_png draws coloured bands on white: a decoded figure holds both
            assert pixels.min() < 200 and pixels.max() > 240 and pixels.std() > 5
            seen += 1
    assert seen >= len(sizes) - 1


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_poppler_draws_the_figures(full, tmp_path):
    """pdftoppm renders the first figure page with no error, and the page holds the figure's colours."""
    out, _ = full
    proc = subprocess.run(["pdftoppm", "-r", "30", "-png", str(out / "report.pdf"), str(tmp_path / "page")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr[-500:]
    coloured = 0
    for png in sorted(tmp_path.glob("page*.png")):
        rgb = np.asarray(Image.open(png).convert("RGB"), np.int16)
        # fake_png's bands are (40..240, 90, 160): bluish pixels that text never has
        coloured += int(((rgb[..., 2] - rgb[..., 0] > 40) & (rgb[..., 1] < 120)).sum())
    assert coloured > 1000


def test_trust_text_never_calls_a_method_better_than_random_on_an_interval_through_zero():
    gain = lambda mean, lo, hi, n=33: {"mean": mean, "lo": lo, "hi": hi, "n": n}  # noqa: E731
    vs = {"gradcam": {"deletion_gain": gain(0.07, 0.04, 0.10), "insertion_gain": gain(0.19, 0.10, 0.28)},
          "occlusion": {"deletion_gain": gain(-0.018, -0.107, 0.060), "insertion_gain": gain(0.2, 0.13, 0.28)},
          "lime": {"deletion_gain": gain(0.05, 0.01, 0.11, n=3), "insertion_gain": gain(0.2, 0.1, 0.3, n=3)}}
    text = " ".join(gain_sentences(vs))
    better = text.split("Better than random on deletion and insertion")[1].split(".")[0]
    assert "Grad-CAM" in better and "Occlusion" not in better and "LIME" not in better
    assert "deletion gain -0.018 [-0.107, 0.060]" in text      # the interval through 0 is printed
    assert "LIME against random on the same 3 images: deletion gain 0.050 (n = 3, no interval)" in text
    table = {"smoothgrad": {"sanity_spearman": (0.42, 0.34, 0.50, 8)},
             "vanilla": {"sanity_spearman": (0.15, 0.10, 0.20, 8)}}
    sanity = sanity_sentence(table, 0.5)
    assert "(passes): Vanilla gradient." in sanity and "(no verdict): SmoothGrad." in sanity


def test_a_lime_panel_whose_weights_are_all_zero_says_so():
    import matplotlib.pyplot as plt
    from types import SimpleNamespace

    from lime_explain import show_lime

    segments = np.repeat(np.arange(4), 16).reshape(8, 8)
    fig, flat = plt.subplots()
    show_lime(flat, SimpleNamespace(segments=segments, local_exp={3: [(k, 0.0) for k in range(4)]}), 3)
    assert [t.get_text() for t in flat.texts] == ["every LIME\nweight is 0"]
    plt.close(fig)
