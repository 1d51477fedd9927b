"""Listing order, labels, selection, decoding of every image mode, corrupt files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dataset
from errors import UserError

# Food-11's real training counts per class (label 0..10): the shape of the listing users index into.
FOOD11_TRAIN = [994, 429, 1500, 986, 848, 1325, 440, 280, 855, 1500, 709]


@pytest.fixture(scope="module")
def food11_names(tmp_path_factory) -> Path:
    """A Food-11 tree of empty .jpg files with the real class counts."""
    root = tmp_path_factory.mktemp("food11")
    (root / "training").mkdir()
    for label, n in enumerate(FOOD11_TRAIN):
        for i in range(n):
            (root / "training" / f"{label}_{i}.jpg").touch()
    return root


def test_plain_string_sort_maps_course_indices(food11_names):
    images = dataset.open_split(food11_names, "training")
    assert len(images) == 9866
    assert [images.files[i] for i in (83, 4218, 4707, 8598)] == ["0_173.jpg", "3_626.jpg", "4_179.jpg", "9_1206.jpg"]
    # class blocks run 0, 10, 1, 2, ..., 9 in a plain string sort
    blocks = [lb for i, lb in enumerate(images.labels) if i == 0 or images.labels[i - 1] != lb]
    assert blocks == [0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_default_selection_is_the_course_four(food11_names):
    images = dataset.open_split(food11_names, "training")
    assert dataset.select(images, None) == [83, 4218, 4707, 8598]


def test_selection_by_index_and_name_and_fallback(demo_data):
    images = dataset.open_split(demo_data, "training")
    assert dataset.select(images, ["3", "1_2.jpg"]) == [3, images.files.index("1_2.jpg")]
    picked = dataset.select(images, None)  # the course indices do not exist in the demo: first image of classes 0-3
    assert [images.labels[i] for i in picked] == [0, 1, 2, 3]
    assert all(images.labels[i - 1] != images.labels[i] for i in picked if i > 0)
    with pytest.raises(UserError, match="out of range"):
        dataset.select(images, [str(len(images))])
    with pytest.raises(UserError, match="no image named"):
        dataset.select(images, ["nope.jpg"])


@pytest.mark.parametrize("name,label", [("0_173.jpg", 0), ("10_5.jpg", 10), ("9_1206.JPG", 9), ("12.jpg", None),
                                        ("cat.png", None), ("3_x.jpg", None)])
def test_label_parsing(name, label):
    assert dataset.parse_label(name) == label


def test_plain_folder_of_photos(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        if name.endswith("txt"):
            (tmp_path / name).write_text("x")
        else:
            Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / name)
    images = dataset.open_split(tmp_path, "training")
    assert images.files == ["a.jpg", "b.png"] and not images.labelled
    one = dataset.open_split(tmp_path / "b.png", "training")
    assert one.files == ["b.png"]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        dataset.open_split(tmp_path / "missing", "training")
    with pytest.raises(UserError, match="no images"):
        dataset.open_split(tmp_path, "training")


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "RGB"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    base = Image.new("RGB", (50, 40), (200, 100, 50))
    if mode == "I;16":
        img = Image.fromarray((np.full((40, 50), 40000)).astype(np.uint16))
    else:
        img = base.convert(mode)
    ext = ".jpg" if mode in ("L", "CMYK", "RGB") else (".tif" if mode == "I;16" else ".png")
    arr = dataset.load_image(_save(img, tmp_path / f"x{ext}"), 32)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.float32
    assert 0.0 <= arr.min() and arr.max() <= 1.0
    if mode in ("RGB", "RGBA", "P"):
        assert np.allclose(arr[16, 16], [200 / 255, 100 / 255, 50 / 255], atol=0.03)


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    arr = dataset.load_image(_save(img, tmp_path / "t.png"), 8)
    assert np.allclose(arr, 1.0)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # white square at the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(img, tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    arr = dataset.load_image(path, 30)
    assert arr[:10].mean() > 0.8 and arr[20:].mean() < 0.2  # the white square is now at the top


def test_cv2_mode_matches_opencv_pipeline(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    pix = (rng.random((37, 53, 3)) * 255).astype(np.uint8)
    path = _save(Image.fromarray(pix), tmp_path / "c.png")
    ours = dataset.load_image(path, 16, cv2_mode=True)
    bgr = cv2.resize(cv2.imread(str(path)), (16, 16))
    assert np.array_equal((ours * 255).round().astype(np.uint8), bgr[:, :, ::-1])


def test_corrupt_image_names_the_file(tmp_path):
    bad = tmp_path / "0_1.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(UserError, match="0_1.jpg"):
        dataset.load_image(bad, 32)
    with pytest.raises(UserError, match="0_1.jpg"):
        dataset.load_image(bad, 32, cv2_mode=True)


def test_split_loader_keeps_order_and_reports_bad_files(tmp_path):
    for i in range(5):
        Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(tmp_path / f"0_{i}.jpg")
    images = dataset.open_split(tmp_path, "x")
    xs = [x for x, _ in dataset.batches(dataset.split_loader(images, 8, 2, workers=2))]
    reds = np.concatenate([x[:, 0, 4, 4].numpy() for x in xs])
    assert list(np.argsort(reds)) == [0, 1, 2, 3, 4]
    (tmp_path / "0_9.jpg").write_bytes(b"garbage")
    images = dataset.open_split(tmp_path, "x")
    with pytest.raises(UserError) as err:
        list(dataset.batches(dataset.split_loader(images, 8, 2, workers=2)))
    assert "0_9.jpg" in str(err.value) and "\n" not in str(err.value)


def test_crop_matches_torchvision_resize_and_centre_crop(tmp_path):
    """--resize crop: shorter side then centre crop, exactly torchvision's ImageNet eval transforms on PIL images."""
    import torchvision.transforms as T

    rng = np.random.default_rng(0)
    for w, h, interp in ((300, 200, "bilinear"), (201, 333, "bicubic")):
        path = tmp_path / f"p{w}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        mode = T.InterpolationMode.BICUBIC if interp == "bicubic" else T.InterpolationMode.BILINEAR
        ref = np.asarray(T.CenterCrop(64)(T.Resize(73, interpolation=mode)(Image.open(path).convert("RGB"))),
                         dtype=np.float32) / 255.0
        ours = dataset.load_image(path, 64, resize=dataset.Resize("crop", 73, interp))
        assert ours.shape == (64, 64, 3)
        np.testing.assert_array_equal(ours, ref)
    # default shorter side: torchvision's 256/224 ratio; stretch keeps the whole picture
    assert dataset.Resize("crop").boxes(400, 300, 224) == ((341, 256), (58, 16, 282, 240))
    assert dataset.Resize().boxes(400, 300, 224) == ((224, 224), None)
    with pytest.raises(UserError, match="stretch or crop"):
        dataset.Resize("zoom")


def test_mask_is_cropped_like_its_image(tmp_path):
    m = np.zeros((100, 200), dtype=np.uint8)
    m[:, :50] = 255   # the left quarter
    Image.fromarray(m).save(tmp_path / "m.png")
    crop = dataset.load_mask(tmp_path / "m.png", 50, dataset.Resize("crop", 50))   # 100 x 50, centre 50 x 50
    assert crop.shape == (50, 50) and not crop.any()                                 # the left quarter is cut away
    assert dataset.load_mask(tmp_path / "m.png", 40)[:, :10].all()


def test_mark_masks_live_in_masks_mark_by_split_and_stem(tmp_path):
    (tmp_path / "validation").mkdir()
    assert dataset.mark_dir(tmp_path, "validation") is None
    (tmp_path / "masks_mark" / "validation").mkdir(parents=True)
    assert dataset.mark_dir(str(tmp_path), "validation") == tmp_path / "masks_mark" / "validation"
    assert dataset.mark_path(tmp_path, "validation", "3_14.jpg") == tmp_path / "masks_mark" / "validation" / "3_14.png"


def test_object_masks_need_one_per_image_and_follow_the_resize(tmp_path):
    for sub in ("validation", "masks/validation"):
        (tmp_path / sub).mkdir(parents=True)
    for name in ("0_0.jpg", "0_1.jpg"):
        Image.new("RGB", (200, 100)).save(tmp_path / "validation" / name)
    m = np.zeros((100, 200), dtype=np.uint8)
    m[:, :50] = 255   # the left quarter
    Image.fromarray(m).save(tmp_path / "masks" / "validation" / "0_0.png")
    images = dataset.open_split(tmp_path, "validation")
    assert dataset.load_masks(images, [0, 1], 50) is None          # 0_1 has no mask
    crop = dataset.load_masks(images, [0], 50, dataset.Resize("crop", 50))
    assert crop.shape == (1, 50, 50) and not crop.any()
    assert dataset.load_masks(images, [0], 40)[0, :, :10].all()


def test_plain_folder_selection_and_all(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (8, 8)).save(folder / f"IMG_{i:02d}.jpg")
    images = dataset.open_split(folder, "images")
    assert dataset.select(images, None, plain=True) == list(range(8))
    assert dataset.select(images, ["all"], plain=True) == list(range(10))
    assert dataset.select(images, None) == [0, 1, 2, 3]   # not a plain folder: the Food-11 rule


def test_food11_tree_keeps_the_course_four_when_plain_is_off(food11_names):
    images = dataset.open_split(food11_names, "training")
    assert dataset.select(images, None, plain=False) == [83, 4218, 4707, 8598]
