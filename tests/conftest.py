"""Shared fixtures: the demo data, the demo model, a run context, and one shared default pipeline run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The demo runs in the suite score trust on the 4 selected images, not the default 33-image protocol (124 s a
# run): the protocol has its own tests in test_metrics.py, and two full runs would take CI past its 20 minutes.
HW5_ENV = os.environ | {"HW5_ARGS": "--set trust_per_class=0 --set sanity_images=2"}
sys.path.insert(0, str(REPO))

import context  # noqa: E402
import dataset  # noqa: E402
import demo  # noqa: E402
import main  # noqa: E402


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The embedded demo tree (generated on first use)."""
    return demo.ensure_demo_data()


@pytest.fixture(scope="module")
def one_thread():
    """The test machine's 2 cores are shared: one thread avoids oversubscription (results do not depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_ctx(out: Path, *extra: str) -> context.RunContext:
    """A run context on the demo (or whatever the extra flags say), writing into out."""
    return context.build(context.Options.from_args(main.parse_args(["--out", str(out), "--device", "cpu", *extra])))


@pytest.fixture(scope="session")
def demo_ctx(demo_data, tmp_path_factory) -> context.RunContext:
    """A run context on the demo with the default selected images (session-wide: do not mutate)."""
    return make_ctx(tmp_path_factory.mktemp("ctx"))


@pytest.fixture(scope="session")
def demo_model(demo_ctx) -> torch.nn.Module:
    """The committed demo checkpoint behind the [0,1]-RGB wrapper, eval mode, CPU."""
    return demo_ctx.model


@pytest.fixture(scope="session")
def gt_batch(demo_data, demo_model):
    """The demo's fixed ground-truth subset (3 unstamped validation images per class), correctly classified ones.

    Returns (images N x 3 x 128 x 128, masks N x 128 x 128 bool, labels N, files N).
    """
    val = dataset.open_split(demo_data, "validation")
    idx = [val.files.index(f) for f in demo.gt_subset(demo_data)]
    x, masks = dataset.load_batch(val, idx, 128)
    labels = np.array([val.labels[i] for i in idx])
    with torch.inference_mode():
        preds = demo_model(x).argmax(1).numpy()
    keep = preds == labels
    return x[keep], masks[keep], labels[keep], [val.files[i] for i, k in zip(idx, keep) if k]


@pytest.fixture(scope="session")
def pipeline_run(demo_data, tmp_path_factory) -> Path:
    """One run of `bash hw5.sh` (every default task on the demo, trust on the selected images), shared by the suite."""
    work = tmp_path_factory.mktemp("pipeline")
    proc = subprocess.run(["bash", str(REPO / "hw5.sh")], cwd=work, capture_output=True, text=True, timeout=900,
                          env=HW5_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work / "output"
