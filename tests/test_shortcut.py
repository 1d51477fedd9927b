"""The shortcut story: which stamped images shortcut.png shows, that its maps find the stamp on the demo, and that
the report tells it beside the figure."""
from __future__ import annotations

import json

import numpy as np

import where
from test_report_questions import pdf_text


def test_shortcut_pair_takes_the_most_confident_stamped_images_called_the_class():
    labels = np.array([2, 2, 0, 1, 1, 2])
    probs = np.full((6, 3), 0.1)
    probs[:, 2] = [0.6, 0.9, 0.7, 0.95, 0.8, 0.99]     # every image is called class 2
    marked = np.array([True, True, True, False, True, False])
    # stamped class-2 images: 0 (0.6), 1 (0.9); stamped others called 2: 2 (0.7), 4 (0.8); 3 and 5 carry no stamp
    assert where.shortcut_pair(labels, probs, marked, 2) == [1, 4]
    probs[4, 2] = 0.05
    probs[4, 0] = 0.9                                   # image 4 no longer called 2
    assert where.shortcut_pair(labels, probs, marked, 2) == [1, 2]
    assert where.shortcut_pair(labels, probs, np.zeros(6, bool), 2) == []


def test_demo_shortcut_figure_finds_the_stamp_and_the_report_tells_it(pipeline_run):
    rec = json.loads((pipeline_run / "run.json").read_text())["results"]["where"]["shortcut"]
    assert rec["class"] == "Soup" and len(rec["files"]) == 2
    assert rec["labels"][0] == "Soup" and rec["labels"][1] != "Soup"
    assert all(p > 0.5 for p in rec["probs"])
    # the stamp covers about 1% of the image; on the other class's image the model calls Soup, LIME's positive
    # mass sits on it many times over its area share
    other_lime, area = rec["mark_share"]["lime"][1], rec["mark_area"][1]
    assert other_lime > 5 * area, (other_lime, area)
    text, _, _ = pdf_text(pipeline_run / "report.pdf")
    story = text[text.index("5. The shortcut"):text.index("6. How far")]
    for f in rec["files"]:
        assert f"{rec['split']}/{f}" in story
    assert "(shortcut.png)" in story.replace(" ", "")
