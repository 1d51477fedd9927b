"""bf16 predictions made fp32-exact by re-checking small-margin images in fp32."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dataset
import exact
from model import Autocast


pytestmark = pytest.mark.usefixtures("one_thread")


def test_bf16_with_recheck_predicts_exactly_fp32_on_the_demo_validation_split(demo_data, demo_model):
    val = dataset.open_split(demo_data, "validation")
    x, _ = dataset.load_batch(val, list(range(len(val.files))), 128)
    bf16 = Autocast(demo_model, torch.device("cpu"))
    with torch.inference_mode():
        fp32_pred = torch.cat([demo_model(b) for b in x.split(4)]).argmax(1)
        plain = torch.cat([bf16(b) for b in x.split(4)])
    checked = [exact.recheck(demo_model, bf16, b) for b in x.split(4)]
    probs = torch.cat([c.probs for c in checked])
    rechecked = torch.cat([c.rechecked for c in checked])
    assert torch.equal(probs.argmax(1), fp32_pred)
    # every image plain bf16 gets wrong was re-checked; the re-check stays rare
    assert rechecked[plain.argmax(1) != fp32_pred].all()
    # demo v2 is less confident than the bench tree's model (5% there): 40 of 549 re-checked here
    assert int(rechecked.sum()) <= 0.10 * len(x), int(rechecked.sum())
    # demo v2's bf16 error exceeds the bound measured on v1 in some batches: the re-check widens it (by design)
    assert all(c.ratio >= exact.BF16_ERROR_RATIO for c in checked)
    # the probabilities are a softmax; the re-checked rows are fp32's own
    torch.testing.assert_close(probs.sum(1), torch.ones(len(x)))
    assert torch.allclose(exact.exact_probs(demo_model, bf16, x[:4]), probs[:4])


class Shifted(nn.Module):
    """A stand-in 'bf16' model: the fp32 model's logits plus a fixed error per image."""

    def __init__(self, model: nn.Module, error: torch.Tensor):
        super().__init__()
        self.model, self.error = model, error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.error[: len(x)]


def test_a_larger_error_than_measured_widens_the_bound():
    # logits = the input. The 'bf16' error flips images 0 and 1. Image 1's bf16 margin (0.2) is inside the measured
    # bound, so it is re-checked first; its observed error (4% of its logits' norm) is above the measured one,
    # which widens the bound until it covers image 0 (bf16 margin 0.59, just outside the measured bound).
    fp32 = nn.Flatten()
    x = torch.tensor([[10.0, 9.99, 0.0], [10.0, 9.6, 0.0], [10.0, 0.0, 0.0]])
    error = torch.tensor([[0.0, 0.6, 0.0], [-0.3, 0.3, 0.0], [0.0, 0.0, 0.0]])
    bf16 = Shifted(fp32, error)
    with torch.no_grad():
        assert bf16(x).argmax(1).tolist() == [1, 1, 0]   # plain 'bf16' is wrong on images 0 and 1
    checked = exact.recheck(fp32, bf16, x)
    assert checked.probs.argmax(1).tolist() == [0, 0, 0]
    assert checked.rechecked.tolist() == [True, True, False]
    assert checked.observed > exact.BF16_ERROR_RATIO / exact.SAFETY
    assert checked.ratio == exact.SAFETY * checked.observed


def test_margin_and_spread():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 0.0, -1.0]])
    np.testing.assert_allclose(exact.top2_margin(logits).numpy(), [0.5, 0.0])
    np.testing.assert_allclose(exact.spread(logits + torch.tensor([0.1, -0.1, 0.0]), logits).numpy()[0],
                               0.2 / float((logits[0] + torch.tensor([0.1, -0.1, 0.0])).norm()), rtol=1e-6)
