"""A Food-11-sized synthetic tree for the benchmark (9866 / 3430 / 3347 JPEGs around 512x384), made once."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import demo  # noqa: E402

BENCH_DIR = REPO / ".cache" / "bench-food11"
# Food-11's per-class image counts (label 0..10).
COUNTS = {
    "training": [994, 429, 1500, 986, 848, 1325, 440, 280, 855, 1500, 709],
    "validation": [362, 144, 500, 327, 326, 449, 147, 96, 347, 500, 232],
}
N_TESTING = 3347
VERSION = "2"


def _one(job: tuple[str, str, int, int]) -> None:
    """Render one image: the demo's object on clutter, upscaled to a Food-11-like size."""
    folder, name, label, k = job
    rng = np.random.default_rng([7, k])
    pic = demo.render(label, rng)[0]
    w, h = (512, 384) if rng.random() < 0.7 else (int(rng.integers(300, 513)), int(rng.integers(300, 513)))
    pic.resize((w, h), Image.BILINEAR).save(Path(folder) / name, format="JPEG", quality=90)


def ensure_tree(root: Path = BENCH_DIR, workers: int | None = None) -> Path:
    """Generate the tree once (into a temporary folder, then renamed into place)."""
    if (root / "VERSION").is_file() and (root / "VERSION").read_text().strip() == VERSION:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bench-", dir=root.parent))
    jobs = []
    for split, counts in COUNTS.items():
        (tmp / split).mkdir()
        for label, n in enumerate(counts):
            jobs += [(str(tmp / split), f"{label}_{i}.jpg", label, len(jobs)) for i in range(n)]
    (tmp / "testing").mkdir()
    jobs += [(str(tmp / "testing"), f"{i}.jpg", i % 11, len(jobs)) for i in range(N_TESTING)]
    print(f"generating {len(jobs)} benchmark images into {root} (once)...", flush=True)
    with ProcessPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(_one, jobs, chunksize=64))
    (tmp / "VERSION").write_text(VERSION + "\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


if __name__ == "__main__":
    print(ensure_tree())
