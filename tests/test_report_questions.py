"""The report answers the course's four questions from this run: a real default demo run's report.pdf holds every
PNG figure of the run within 20 pages and 5 MB and names the most-confused pair; on a Food-11-style tree without
masks, Q1 and Q2 hold the mask-free measures and the dataset examples."""
from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pypdf
from PIL import Image

import main


def pdf_text(path: Path) -> tuple[str, int, int]:
    """The PDF's text (whitespace squeezed), its page count and the number of images it draws."""
    reader = pypdf.PdfReader(path)
    drawn = sum(len(re.findall(rb"/[\w.]+ Do", p.get_contents().get_data())) for p in reader.pages)
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages))
    return text, len(reader.pages), drawn


def test_demo_report_holds_every_figure_within_size(pipeline_run):
    out = pipeline_run
    record = json.loads((out / "run.json").read_text())
    pngs = sorted({f for fs in record["files"].values() for f in fs if f.endswith(".png")})
    assert len(pngs) >= 18
    text, pages, drawn = pdf_text(out / "report.pdf")
    squeezed = text.replace(" ", "")
    missing = [f for f in pngs if f"({f})" not in squeezed]
    assert not missing, f"figures not in report.pdf: {missing}"
    assert drawn >= len(pngs)
    assert pages <= 20, pages
    assert (out / "report.pdf").stat().st_size <= 5 * 1024 * 1024
    # Q3 names the most-confused pair of confusion_matrix.csv
    with open(out / "confusion_matrix.csv", newline="") as f:
        rows = list(csv.reader(f))
    names, counts = rows[0][1:], np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    np.fill_diagonal(counts, 0)
    if counts.max() > 0:
        i, j = np.unravel_index(int(counts.argmax()), counts.shape)
        q3 = text[text.index("3. LIME per class"):text.index("4. Further methods")]
        assert f"{names[i]} predicted as {names[j]} {counts[i, j]} times" in q3
    # Q1 measures from the where task
    assert "positive mass on the object" in text and "where_classes.png" in text


def _tree(root: Path) -> Path:
    """A tiny labelled Food-11-style tree (3 classes, no masks) of 16 x 16 pictures with a bright centre."""
    rng = np.random.default_rng(0)
    for split, per in (("training", 2), ("validation", 4)):
        (root / split).mkdir(parents=True)
        for c in range(3):
            for i in range(per):
                img = (rng.random((16, 16, 3)) * 80).astype(np.uint8)
                img[5:11, 5:11, c] = 230
                Image.fromarray(img).save(root / split / f"{c}_{i}.jpg")
    return root


def test_report_without_masks_measures_centre_border_and_examples(tmp_path):
    arch = tmp_path / "tiny.py"
    arch.write_text(textwrap.dedent("""
        import torch
        def build():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                                       torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                                       torch.nn.Linear(16, 3)), {"input_size": 16}
        """))
    out = tmp_path / "o"
    sets = ["filter_count=2", "filter_steps=2", "robust_steps=2", "smoothgrad_n=2", "ig_steps=4", "lime_samples=20",
            "lime_segments=4", "shap_max_evals=20", "occlusion_patch=8", "occlusion_stride=8", "loader_workers=0"]
    code = main.main(["--data", str(_tree(tmp_path / "tree")), "--arch", f"{arch}:build", "--out", str(out),
                      "--device", "cpu", "--images", "0,1", "--task", "confusion,filters,where,report"]
                     + [a for s in sets for a in ("--set", s)])
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    where = record["results"]["where"]
    assert where["masks"] == "none" and where["regions"] == ["centre", "border"]
    assert where["class_split"] == "validation" and sum(where["class_images"].values()) == 12
    for shares in where["methods"].values():
        assert abs(sum(v for v in shares.values() if v is not None) - 1) < 1e-6 or None in shares.values()
    examples = record["results"]["filters"]["layers"]
    assert all(len(rows) == 4 for layer in examples.values() for rows in layer["examples"].values())
    assert record["results"]["filters"]["examples_split"] == "validation"
    text, _, _ = pdf_text(out / "report.pdf")
    q1 = text[text.index("1. Saliency maps"):text.index("2. Filter visualization")]
    q2 = text[text.index("2. Filter visualization"):text.index("3. LIME per class")]
    assert "in the border band" in q1 and "Mass in the border band against its area" in q1
    assert "where_classes.png" in q1
    assert "that excite each filter most show what it responds to" in q2
    assert "filter_examples.png" in q2.replace(" ", "")
    assert "object" not in q1.split("Mass in the border band")[1][:200]


def test_demo_opening_names_every_look_and_q3_every_planted_pair(pipeline_run):
    record = json.loads((pipeline_run / "run.json").read_text())
    looks = json.loads((Path(record["data"]) / "classes.json").read_text())
    text, _, _ = pdf_text(pipeline_run / "report.pdf")
    opening = text[text.index("0. The data and the model"):text.index("1. Saliency maps")]
    squeezed = opening.replace(" ", "")
    for c in looks["classes"]:
        assert c["look"].replace(" ", "") in squeezed, f"the opening does not describe {c['name']}: {c['look']}"
    assert "synthetic" in opening and "stamp" in opening
    q3 = text[text.index("3. LIME per class"):text.index("4. Further methods")]
    for a, b, what in looks["pairs"]:
        assert f"{a} and {b} are a planted look-alike pair (they differ only in {what})" in q3
