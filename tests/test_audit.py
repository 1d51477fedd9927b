"""The whole-split audit: rows independent of batching, both engines write the same audit.csv, the suspicion score
finds the demo's planted mark, and an unreachable Ray cluster fails fast with one line."""
from __future__ import annotations

import csv
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO

import audit  # noqa: E402
import dataset  # noqa: E402
import demo  # noqa: E402
import main  # noqa: E402
import tasks  # noqa: E402


def read_rows(path: Path) -> list[dict[str, str]]:
    """audit.csv as a list of dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def audit_local(demo_data, tmp_path_factory) -> Path:
    """One local audit of the demo's validation split (the default split of --task audit)."""
    out = tmp_path_factory.mktemp("audit-local")
    assert main.main(["--task", "audit", "--out", str(out), "--device", "cpu", "--threads", "2"]) == 0
    return out


def test_audit_is_opt_in():
    assert "audit" in tasks.names() and "audit" not in tasks.default_tasks()
    assert tasks.names().index("audit") < tasks.names().index("report")   # the report sees audit.csv


def test_rows_do_not_depend_on_batch_neighbours(demo_data, demo_model):
    val = dataset.open_split(demo_data, "validation")
    idx = [0, 7, 40, 99, 150, 201]
    x, _ = dataset.load_batch(val, idx, 128)
    labels = np.array([val.labels[i] for i in idx])
    layer = demo_model.net.cnn[18]
    kw = dict(batch_size=4, grid=16, steps=4, border=0.125, ties=audit.tie_order(16, 0),
              floor=audit.black_probs(demo_model, 128, 3, 4))
    whole = audit.audit_batch(demo_model, layer, x, labels, **kw)
    order = np.array([5, 2, 0, 4, 1, 3])
    parts = audit.AuditRows.concat([audit.audit_batch(demo_model, layer, x[order[:3]], labels[order[:3]], **kw),
                                    audit.audit_batch(demo_model, layer, x[order[3:]], labels[order[3:]], **kw)])
    back = parts.take(np.argsort(order))
    for f in ("pred", "confidence", "maps", "deletion_auc", "border_mass"):
        assert np.array_equal(getattr(whole, f), getattr(back, f)), f
    assert whole.maps.shape == (6, 16, 16) and (whole.maps >= 0).all() and whole.maps.sum() > 0
    assert ((whole.deletion_auc >= 0) & (whole.deletion_auc <= 1)).all()
    # Grad-CAM of the prediction at the default layer, as saliency.gradcam computes it (then pooled to 16 x 16)
    import saliency

    full = saliency.gradcam(demo_model, x, whole.pred, layer, 4)
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(full)[:, None], 16)[:, 0].numpy()
    corr = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(pooled, whole.maps)]
    assert min(corr) > 0.95, corr


def test_kmeans_is_seeded_and_separates_patterns():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (20, 4)), rng.normal(3, 0.1, (8, 4))])
    a, _ = audit.kmeans(x, 2, np.random.default_rng(5))
    b, _ = audit.kmeans(x, 2, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert (a[:20] == 0).all() and (a[20:] == 1).all()   # the larger pattern is 0


def test_suspicion_never_reads_masks(audit_local):
    rows = read_rows(audit_local / "audit.csv")
    from outputs import load_maps

    maps = load_maps(audit_local / "arrays" / "audit.npz")["maps"]
    n = len(rows)
    base = dict(pred=np.array([int(r["pred"]) for r in rows]), confidence=np.array([float(r["confidence"]) for r in rows]),
                label=np.array([int(r["label"]) for r in rows]), maps=maps,
                deletion_auc=np.zeros(n), border_mass=np.zeros(n))
    with_masks = audit.AuditRows(**base, object_mass=np.ones(n), mark_mass=np.ones(n), has_mark=np.ones(n, np.int64))
    without = audit.AuditRows(**base, object_mass=np.full(n, np.nan), mark_mass=np.full(n, np.nan),
                              has_mark=np.full(n, -1, np.int64))
    a = audit.summarise(with_masks, 11, 3, 0, 3)
    b = audit.summarise(without, 11, 3, 0, 3)
    assert np.array_equal(a.suspicion, b.suspicion) and np.array_equal(a.rank, b.rank)


def test_audit_csv_has_fixed_columns_in_listing_order(audit_local, demo_data):
    with open(audit_local / "audit.csv", encoding="utf-8") as f:
        assert f.readline().strip().split(",") == audit.COLUMNS
    rows = read_rows(audit_local / "audit.csv")
    assert [r["file"] for r in rows] == dataset.open_split(demo_data, "validation").files
    assert sorted(int(r["suspicion_rank"]) for r in rows) == list(range(1, len(rows) + 1))
    for r in rows[:50]:
        for key in ("confidence", "deletion_auc", "border_mass", "suspicion"):
            digits = r[key].lstrip("-").replace(".", "").split("e")[0].lstrip("0")
            assert len(digits) <= 6, (key, r[key])
    assert (audit_local / "audit.png").stat().st_size > 10_000


def test_ray_engine_writes_the_same_audit_csv(audit_local, tmp_path):
    out = tmp_path / "ray"
    assert main.main(["--task", "audit", "--engine", "ray", "--out", str(out), "--device", "cpu",
                      "--threads", "2"]) == 0
    assert (out / "audit.csv").read_bytes() == (audit_local / "audit.csv").read_bytes()


def test_top16_suspicious_images_carry_the_planted_mark(audit_local, demo_data):
    assert (demo_data / "masks_mark" / "validation").is_dir(), "the demo tree has no masks_mark/validation/"
    rows = read_rows(audit_local / "audit.csv")
    top = sorted(rows, key=lambda r: int(r["suspicion_rank"]))[:16]
    share = np.mean([r["has_mark"] == "1" for r in rows])
    hits = sum(r["has_mark"] == "1" for r in top)
    assert share < 0.3   # chance: about 3 of 16
    assert hits >= 12, f"{hits} of the top 16 carry the mark"
    rescored = [r for r in rows if r["rescore"] != ""]
    assert len(rescored) == 64 and all(int(r["suspicion_rank"]) <= 64 for r in rescored)
    assert all(r["ig_spot_mass"] == r["spot_drop"] == "" for r in rows if r["rescore"] == "")


def test_second_look_reranks_only_its_candidates():
    rank = np.array([3, 1, 5, 2, 4, 6])
    second = audit.Rescore(index=np.array([1, 3, 0]), ig_spot=np.ones(3), spot_drop=np.ones(3),
                           score=np.array([0.1, 0.9, 0.5]), seconds=0.0)
    assert audit.reranked(rank, second).tolist() == [2, 3, 5, 1, 4, 6]


def test_spot_drop_is_zero_for_a_model_that_ignores_the_image():
    class Flat(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 3) + torch.tensor([2.0, 0.0, 0.0]) + 0 * x.mean()

    x = torch.rand(2, 3, 32, 32)
    conf = torch.softmax(torch.tensor([2.0, 0.0, 0.0]), 0)[0].item()
    drop = audit.spot_drop(Flat(), x, np.array([0, 0]), np.array([conf, conf]), np.array([[0, 0], [5, 5]]),
                           window=3, grid=8, batch_size=2)
    assert np.allclose(drop, 0.0, atol=1e-6)


def test_unreachable_ray_address_fails_fast_with_one_line(tmp_path):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "--task", "audit", "--engine", "ray",
                           "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path), "--device", "cpu"],
                          capture_output=True, text=True, timeout=60)
    took = time.perf_counter() - t0
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "ray" in lines[0].lower() and str(port) in lines[0], proc.stderr[-2000:]
    assert took < 30, took


def test_masks_are_cropped_like_the_images(demo_model, tmp_path):
    # a wide image: its mark (left quarter) lies outside the centre crop, its object mask straddles the crop's edge
    for sub in ("validation", "masks/validation", "masks_mark/validation"):
        (tmp_path / sub).mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 256, 3), dtype=np.uint8)).save(
        tmp_path / "validation" / "0_0.png")
    obj, mark = np.zeros((128, 256), np.uint8), np.zeros((128, 256), np.uint8)
    obj[16:112, 48:160] = 255
    mark[:, :64] = 255
    Image.fromarray(obj).save(tmp_path / "masks" / "validation" / "0_0.png")
    Image.fromarray(mark).save(tmp_path / "masks_mark" / "validation" / "0_0.png")
    crop = dataset.Resize("crop")
    cfg = audit.AuditConfig(data=str(tmp_path), split="validation", size=128, cv2_mode=False, resize=crop,
                            batch_size=2, grid=16, steps=2, border=0.125, seed=0, layer="cnn.18", precision="fp32",
                            threads=1, workers=0)
    auditor = audit.Auditor(demo_model, cfg, 11)
    x = dataset.decode_uint8(tmp_path / "validation" / "0_0.png", 128, False, crop)[None]
    rows = auditor.rows(x, np.array([0]))
    cropped = dataset.load_mask(tmp_path / "masks" / "validation" / "0_0.png", 128, crop)
    stretched = dataset.load_mask(tmp_path / "masks" / "validation" / "0_0.png", 128)
    expected, unaligned = (audit.mass_share(rows.maps, audit.cell_fractions(m[None], 16)) for m in (cropped, stretched))
    assert expected[0] != unaligned[0]   # the maps tell the two alignments apart
    assert rows.object_mass[0] == expected[0]
    assert rows.has_mark[0] == 0 and rows.mark_mass[0] == 0.0
