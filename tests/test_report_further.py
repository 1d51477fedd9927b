"""Question 4 of the report, from a small constructed run: one paragraph per further method, each naming its reference
and a number of this run; intervals only from 5 images; occlusion's outlier curve only when trust.json shows it."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from report.q4_further import PARAGRAPHS, further_section
from report.reading import Run
from report.references import REFERENCES

FILES = ["validation/0_0.jpg", "validation/2_0.jpg", "validation/6_0.jpg", "validation/9_0.jpg", "validation/3_0.jpg"]
TRUST = {
    "methods": {"gradcam": {"sanity_check": "fails sanity check",
                            "sanity_spearman": {"mean": 0.524, "lo": 0.448, "hi": 0.601, "n": 2}}},
    "sanity": {"threshold": 0.5},
    "stability": {"smoothgrad": {"spearman_mean": 0.912, "n": 4}},
    "per_image": {
        "occlusion": {"files": FILES, "saturated": [False] * 5, "deletion_auc": [0.12, 0.15, 0.81, 0.2, 0.1],
                      "gt_files": FILES, "mass_in_mask": [0.7, 0.8, 0.21, 0.65, 0.75]},
        "gradcam": {"files": FILES, "saturated": [False] * 5, "deletion_auc": [0.1, 0.2, 0.18, 0.1, 0.1]},
        "integrated_gradients": {"files": FILES, "saturated": [False] * 5, "deletion_auc": [0.3, 0.2, 0.27, 0.2, 0.2]},
        "random": {"files": FILES, "saturated": [False] * 5, "deletion_auc": [0.8, 0.8, 0.9, 0.8, 0.8]}}}
RESULTS = {
    "gradcam": {"layer": "cnn.18"},
    "smoothgrad": {"n": 50, "sigma": 0.15},
    "ig": {"steps": 64, "baseline": "black", "gap_mean": 0.0028, "gap_max": 0.0055},
    "shap": {"max_evals": 500, "masker": "auto", "precision": "fp32", "base_values": {"a.jpg": 0.023, "b.jpg": 0.91},
             "sum": {"a.jpg": 0.61, "b.jpg": 0.07}, "additivity_gap_max": 3.5e-8},
    "occlusion": {"patch": 24, "stride": 12, "max_drop": {"a.jpg": 0.174, "b.jpg": 0.013, "c.jpg": 0.036}},
    "deepdream": {"objective": "l2", "images": ["a.jpg", "b.jpg"],
                  "layers": {"cnn.6": {"increase": [1.92, 1.55]}, "cnn.19": {"increase": [6.36, 2.39]}}},
    "classviz": {"precision": "fp32", "reached": {"Bread": 0.9755, "Egg": 0.9905, "Soup": 0.9984}},
    "where": {"masks": "object+mark", "regions": ["object", "mark", "background"], "images": 3,
              "area": {"object": 0.116, "mark": 0.0047, "background": 0.879},
              "methods": {m: {"object": 0.643, "mark": 0.021, "background": 0.336}
                          for m in ("gradcam", "smoothgrad", "integrated_gradients", "shap", "occlusion")}},
}
# each paragraph: its reference as the text cites it, the REFERENCES key, numbers of this run it must quote
EXPECT = [("Selvaraju et al. 2017", "selvaraju", ["cnn.18", "64% of its positive mass on the object", "0.52 (n = 2 "]),
          ("Smilkov et al. 2017", "smilkov", ["50 copies", "0.15", "0.91", "2% on the stamp (0.5% of the area)"]),
          ("Sundararajan et al. 2017", "sundararajan", ["0.28% on average and 0.55% at most"]),
          ("Lundberg & Lee 2017", "lundberg", ["0.02 to 0.91", "3.5e-08", "(12% of the area)"]),
          ("Zeiler & Fergus 2014", "zeiler", ["0.01 to 0.17 (mean 0.07) over the 3 selected images"]),
          ("Mordvintsev et al. 2015", "mordvintsev", ["1.6 to 1.9", "2.4 to 6.4"]),
          ("Simonyan et al. 2014", "simonyan", ["from 0.976 (Bread) to 0.998 (Soup)"])]


def make_run(tmp_path: Path, results: dict = RESULTS, trust: dict | None = TRUST) -> Run:
    files = {"trust": []}
    if trust is not None:
        (tmp_path / "trust.json").write_text(json.dumps(trust))
        files["trust"] = ["trust.json"]
    record = {"class_names": ["Bread", "Egg", "Soup"], "results": results, "files": files,
              "settings": {"dream_octaves": 3, "classviz_objective": "logprob"}}
    return Run(tmp_path, record)


def test_every_method_names_its_reference_and_a_number_of_the_run(tmp_path):
    run = make_run(tmp_path)
    paragraphs = [make(run) for make in PARAGRAPHS]
    assert len(paragraphs) == len(EXPECT) and all(paragraphs)
    section = further_section(run)
    assert section.paragraphs == paragraphs
    for text, (cite, key, numbers) in zip(paragraphs, EXPECT):
        assert cite in text, (cite, text)
        assert key in section.refs and cite.split()[0] in REFERENCES[key], key
        for number in numbers:
            assert number in text, (number, text)
        assert 2 <= len(re.findall(r"\.\s+(?=[A-Z])", text)) + 1 <= 3, text     # two or three sentences
    # n = 2 sanity images and 3 selected images: no interval anywhere
    assert "[" not in paragraphs[0] and "0.448" not in paragraphs[0]
    assert "(n = 2 images), too few images for a verdict on the sanity check of Adebayo et al. 2018" in paragraphs[0]
    assert "on the 3 selected images" in paragraphs[0].lower()


def test_interval_only_from_five_images(tmp_path):
    trust = copy.deepcopy(TRUST)
    trust["methods"]["gradcam"]["sanity_spearman"]["n"] = 8
    text = PARAGRAPHS[0](make_run(tmp_path, trust=trust))
    assert ("Spearman 0.52 [0.45, 0.60] (n = 8 images): it fails the sanity check of Adebayo et al. 2018, which "
            "fails a map at 0.5 or above.") in text


def test_occlusion_outlier_only_when_the_numbers_show_it(tmp_path):
    text = PARAGRAPHS[4](make_run(tmp_path))
    assert ("On validation/6_0.jpg its deletion curve stays high (MoRF AUC 0.81 against its median 0.15 over 5 "
            "unsaturated images; median 0.23 for the other methods there) because of its map, not the model") in text
    assert "only 21% of its mass on the object (median 70%)" in text
    # an ordinary curve on that image: no outlier sentence
    trust = copy.deepcopy(TRUST)
    trust["per_image"]["occlusion"]["deletion_auc"][2] = 0.25
    (tmp_path / "b").mkdir()
    assert "stays high" not in PARAGRAPHS[4](make_run(tmp_path / "b", trust=trust))
    # high, but the map is on the object there: the explanation does not hold, so it is not given
    trust = copy.deepcopy(TRUST)
    trust["per_image"]["occlusion"]["mass_in_mask"][2] = 0.9
    (tmp_path / "c").mkdir()
    assert "stays high" not in PARAGRAPHS[4](make_run(tmp_path / "c", trust=trust))
    # high, but the other methods' curves stay high there too: the image, not occlusion's map
    trust = copy.deepcopy(TRUST)
    trust["per_image"]["gradcam"]["deletion_auc"][2] = 0.7
    trust["per_image"]["integrated_gradients"]["deletion_auc"][2] = 0.7
    (tmp_path / "e").mkdir()
    assert "stays high" not in PARAGRAPHS[4](make_run(tmp_path / "e", trust=trust))
    # without trust.json the paragraph keeps its own numbers
    (tmp_path / "d").mkdir()
    text = PARAGRAPHS[4](make_run(tmp_path / "d", trust=None))
    assert "Zeiler & Fergus 2014" in text and "0.17" in text and "stays high" not in text


def test_missing_tasks_leave_their_paragraph_out(tmp_path):
    run = make_run(tmp_path, results={"ig": RESULTS["ig"], "classviz": {"Bread": 0.97, "Soup": 0.99}}, trust=None)
    section = further_section(run)
    assert len(section.paragraphs) == 2
    assert "Sundararajan et al. 2017" in section.paragraphs[0]
    assert "from 0.970 (Bread) to 0.990 (Soup)" in section.paragraphs[1]       # the older flat record
    assert further_section(make_run(tmp_path, results={}, trust=None)).notes
