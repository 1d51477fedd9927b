"""What an optimised filter image shows: its dominant colour and stripe orientation, and the Q2 text built from them."""
from __future__ import annotations

import numpy as np
import pytest

import filter_vis as fv
from report.q2_filters import filters_section
from report.reading import Run

SIZE = 64


def stripes(u: np.ndarray, period: int = 8) -> np.ndarray:
    """0/1 square-wave stripes along the coordinate u."""
    return (np.sin(2 * np.pi * (u + 0.5) / period) > 0).astype(np.float64)


ROWS, COLS = np.mgrid[0:SIZE, 0:SIZE]


def test_red_vertical_stripes_are_red_at_90_degrees():
    img = np.zeros((SIZE, SIZE, 3))
    img[..., 0] = 0.5 + 0.5 * stripes(COLS)          # dark and bright red columns
    img[..., 1] = img[..., 2] = 0.05
    p = fv.filter_pattern(img)
    assert p.colour == "red" and p.colour_share == 1.0
    assert p.stripes and p.coherence > 0.9
    assert abs(p.angle - 90.0) < 1.0, p.angle


@pytest.mark.parametrize("u, angle", [(ROWS, 0.0), (COLS + ROWS, 45.0), (COLS - ROWS, 135.0)])
def test_orientation_reads_as_on_the_page(u, angle):
    """Horizontal stripes are 0 deg; stripes running from bottom left to top right ('/') are 45 deg."""
    grey = np.repeat(stripes(u)[..., None], 3, axis=-1)
    p = fv.filter_pattern(grey)
    assert p.colour == "grey" and p.stripes
    assert min(abs(p.angle - angle), 180 - abs(p.angle - angle)) < 1.0, p.angle


def test_flat_grey_is_grey_without_stripes():
    p = fv.filter_pattern(np.full((SIZE, SIZE, 3), 0.5))
    assert p.colour == "grey" and p.colour_share == 1.0
    assert not p.stripes and p.coherence == 0.0 and p.angle is None
    assert p.record()["stripes"] is False


def test_noise_and_a_checkerboard_have_no_clear_stripes():
    noise = np.random.default_rng(0).random((128, 128, 3))
    checker = np.repeat(((stripes(COLS) + stripes(ROWS)) % 2)[..., None], 3, axis=-1)
    for img in (noise, checker):
        p = fv.filter_pattern(img)
        assert not p.stripes and p.coherence < fv.STRIPE_COHERENCE / 3, p


def test_hue_names_and_the_batch_helper():
    colours = {"red": (1, 0, 0), "orange": (1, 0.5, 0), "yellow": (1, 0.9, 0.1), "green": (0.1, 0.8, 0.1),
               "cyan": (0, 0.9, 0.9), "blue": (0.1, 0.2, 1), "purple": (0.5, 0, 1), "magenta": (1, 0, 0.8),
               "grey": (0.95, 0.93, 0.9)}
    for name, rgb in colours.items():
        assert fv.filter_pattern(np.broadcast_to(np.array(rgb, float), (8, 8, 3))).colour == name, name
    imgs = np.zeros((2, 3, SIZE, SIZE))
    imgs[0, 1] = stripes(COLS)                          # green vertical stripes on black
    imgs[1] = 0.5
    out = fv.filter_patterns(imgs, [3, 7])
    assert list(out) == ["3", "7"] and out["7"]["colour"] == "grey" and not out["7"]["stripes"]
    assert out["3"]["stripes"] and abs(out["3"]["angle"] - 90) < 1


def test_white_around_a_colour_and_many_colours():
    """The optimised images' white and dark areas do not hide their colour; no dominant hue is 'mixed'."""
    img = np.ones((SIZE, SIZE, 3))
    img[: int(SIZE * 0.4)] = (0.1, 0.7, 0.1)             # 40% green, 60% white
    p = fv.filter_pattern(img)
    assert p.colour == "green" and abs(p.colour_share - 0.4) < 0.02
    img[: int(SIZE * 0.3)] = 1.0                         # 10% green: mostly white
    assert fv.filter_pattern(img).colour == "grey"
    rainbow = np.zeros((SIZE, SIZE, 3))
    for k, rgb in enumerate([(1, 0, 0), (1, 0.9, 0.1), (0.1, 0.8, 0.1), (0.1, 0.2, 1), (1, 0, 0.8)]):
        rainbow[:, k * SIZE // 5:(k + 1) * SIZE // 5] = rgb
    p = fv.filter_pattern(rainbow)
    assert p.colour == "mixed" and p.colour_share == 1.0


def _pattern(colour: str, share: float, angle: float | None, coherence: float) -> dict:
    return {"colour": colour, "colour_share": share, "angle": angle, "coherence": coherence,
            "stripes": angle is not None and coherence >= fv.STRIPE_COHERENCE}


def test_q2_names_each_shown_filters_colour(tmp_path):
    """The section built from a small constructed run names every filter's colour, stripes and top classes."""
    names = ["Bread", "Dessert", "Egg", "Soup"]
    robust = {"0": _pattern("yellow", 0.62, 45.0, 0.71), "1": _pattern("magenta", 0.4, 120.0, 0.1),
              "3": _pattern("mixed", 0.5, 30.0, 0.2),
              "2": _pattern("grey", 0.55, None, 0.0), "5": _pattern("orange", 0.5, 90.0, 0.5)}
    plain = {"0": _pattern("yellow", 0.5, 10.0, 0.1), "1": _pattern("red", 0.4, 0.0, 0.0),
             "3": _pattern("blue", 0.5, 30.0, 0.2),
             "2": _pattern("grey", 0.9, None, 0.0), "5": _pattern("orange", 0.3, 0.0, 0.05)}
    ex = {"0": ["2_1.jpg", "2_4.jpg", "2_9.jpg", "0_3.jpg"], "1": ["1_0.jpg", "1_2.jpg", "0_1.jpg", "2_2.jpg"],
          "3": ["1_5.jpg", "1_6.jpg", "1_7.jpg", "0_2.jpg"],
          "2": ["0_0.jpg", "1_1.jpg", "2_3.jpg", "3_5.jpg"], "5": ["2_7.jpg", "2_8.jpg", "0_9.jpg", "1_9.jpg"]}
    layer = {"filters": [0, 1, 2, 3, 5], "alias": "block3", "plain_activation": [3.0, 2.0, 1.0, 1.0, 4.0],
             "examples": {f: [{"file": fn, "activation": 1.0} for fn in files] for f, files in ex.items()},
             "patterns": {"robust": robust, "plain": plain}}
    (tmp_path / "classes.json").write_text('{"classes": [{"name": "Egg", "look": "ringed yellow ellipse"}]}')
    record = {"class_names": names, "data": str(tmp_path), "demo": True,
              "results": {"filters": {"examples_split": "validation", "examples_images": 40,
                                      "layers": {"cnn.10": layer}}}}
    text = " ".join(filters_section(Run(tmp_path, record)).paragraphs)
    for f, p in robust.items():
        colour = "mixed colours" if p["colour"] == "mixed" else f"{p['colour']} {100 * p['colour_share']:.0f}%"
        assert f"#{f} ({colour}, " in text, (f, text)
    assert "#0 (yellow 62%, stripes at 45 deg; 3 of 4)" in text
    assert "#1 (magenta 40%, no clear stripes; 2 of 4)" in text          # below the coherence threshold
    assert "#2 (grey 55%, no clear stripes; 4 classes)" in text          # mixed top images
    assert "Egg, the ringed yellow ellipse: #0" in text and "; #5 (orange 50%, stripes at 90 deg; 2 of 4)" in text
    assert "Dessert: #1 (magenta 40%, no clear stripes; 2 of 4); #3 (mixed colours, no clear stripes; 3 of 4)." in text
    assert "Mixed top images: #2" in text
    assert "2 of the 5 show clear stripes" in text
    assert "that excite each filter most show what it responds to" in text
    assert "same dominant colour for 3 of the 5 filters" in text
    # the class-mix sentence of a run without patterns is not repeated
    assert "#0 3 of 4 Egg" not in text
