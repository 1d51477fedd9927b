"""road.exact solves the same system as the two reference ROAD imputers (pytorch-grad-cam's NoisyLinearImputer and
Quantus's noisy_linear_imputation, noise off). Both are bench-only (requirements-bench.txt): skipped without them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import road


@pytest.mark.parametrize("holes", ["scattered", "blob"])
def test_exact_matches_the_reference_imputers(holes):
    nli = pytest.importorskip("pytorch_grad_cam.metrics.road").NoisyLinearImputer
    quantus_fill = pytest.importorskip("quantus.functions.perturb_func").noisy_linear_imputation
    rng = np.random.default_rng(0)
    img = rng.random((3, 24, 32)).astype(np.float32)
    if holes == "scattered":
        removed = rng.random((24, 32)) < 0.6
    else:
        yy, xx = np.mgrid[:24, :32]
        removed = (yy - 9) ** 2 + (xx - 20) ** 2 < 64   # a disc touching no border, plus the top row
        removed[0] = True
    ours = road.exact(img, removed)
    pgc = nli(noise=0.0)(torch.from_numpy(img), torch.from_numpy((~removed).astype(np.float32))).numpy()
    qts = quantus_fill(img, np.flatnonzero(removed), noise=0.0)
    np.testing.assert_allclose(ours, pgc, atol=1e-5)
    np.testing.assert_allclose(ours, qts, atol=1e-5)
