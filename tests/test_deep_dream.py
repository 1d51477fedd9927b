"""Deep Dream raises its objective and is reproducible; class models are classified as their class."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import deep_dream as dd
from errors import UserError


@pytest.fixture(scope="module")
def dreamed(demo_ctx):
    """Two images dreamed on the demo's last conv layer with the default settings, twice."""
    layer = dd.default_layers(demo_ctx.conv_layers())[-1]
    objective = dd.layer_objective(demo_ctx.model, demo_ctx.layer(layer))
    s = demo_ctx.settings
    x = demo_ctx.images[:2]

    def run() -> torch.Tensor:
        gens = [demo_ctx.torch_generator("deepdream", layer, i) for i in demo_ctx.indices[:2]]
        return dd.dream(objective, x, gens, steps=s["dream_steps"], octaves=s["dream_octaves"],
                        octave_scale=s["dream_octave_scale"], lr=s["dream_lr"], batch_size=s["grad_batch_size"])
    return objective, x, run(), run()


def test_dream_raises_objective_and_keeps_range(dreamed):
    objective, x, out, _ = dreamed
    before, after = dd.evaluate(objective, x), dd.evaluate(objective, out)
    assert out.shape == x.shape
    assert (after >= 2 * before).all(), (before, after)
    assert out.min() >= 0 and out.max() <= 1


def test_dream_is_reproducible(dreamed):
    _, x, a, b = dreamed
    assert torch.equal(a, b)
    assert not torch.equal(a, x)


def test_filter_and_logit_objectives(demo_ctx):
    x = demo_ctx.images[:1]
    gen = [torch.Generator().manual_seed(0)]
    filt = dd.layer_objective(demo_ctx.model, demo_ctx.layer("cnn.6"), "filter", 3)
    out = dd.dream(filt, x, gen, steps=4, octaves=2, octave_scale=1.4, lr=0.01)
    assert dd.evaluate(filt, out)[0] > dd.evaluate(filt, x)[0]
    logit = dd.logit_objective(demo_ctx.model, 5, demo_ctx.input_size)
    out = dd.dream(logit, x, [torch.Generator().manual_seed(0)], steps=4, octaves=2, octave_scale=1.4, lr=0.01)
    assert dd.evaluate(logit, out)[0] > dd.evaluate(logit, x)[0]
    with pytest.raises(UserError):
        dd.parse_objective("filter:x")
    with pytest.raises(UserError):
        dd.evaluate(dd.layer_objective(demo_ctx.model, demo_ctx.layer("cnn.6"), "filter", 999), x)


def test_class_models_reach_their_class(demo_ctx):
    s = demo_ctx.settings
    classes = list(range(demo_ctx.num_classes))
    gens = [demo_ctx.torch_generator("classviz", c) for c in classes]
    images, probs = dd.class_models(demo_ctx.model, classes, demo_ctx.input_size, gens, steps=s["classviz_steps"],
                                    lr=s["classviz_lr"], l2=s["classviz_l2"], objective=s["classviz_objective"])
    assert images.shape == (len(classes), 3, demo_ctx.input_size, demo_ctx.input_size)
    assert images.min() >= 0 and images.max() <= 1
    assert (probs.argmax(1) == classes).all()
    assert (probs[classes, classes] >= 0.9).all(), probs[classes, classes]
    # the reported probabilities are those of the returned images
    with torch.inference_mode():
        again = torch.softmax(demo_ctx.model(images), 1).numpy()
    np.testing.assert_allclose(again, probs, atol=1e-5)


def test_logit_objective_raises_the_logit_and_names_are_checked(demo_ctx):
    # Simonyan's unnormalised score: the optimised image's class logit ends far above the noise it started from
    def run(steps: int) -> torch.Tensor:   # the same seeded noise each time; 0 steps returns it as it starts
        return dd.class_models(demo_ctx.model, [2], demo_ctx.input_size, [torch.Generator().manual_seed(3)],
                               steps=steps, lr=0.1, l2=1e-3, objective="logit")[0]

    noise, images = run(0), run(8)
    with torch.inference_mode():
        before, after = demo_ctx.model(noise)[0, 2].item(), demo_ctx.model(images)[0, 2].item()
    assert after > before + 1.0, (before, after)
    with pytest.raises(UserError):
        dd.class_models(demo_ctx.model, [2], demo_ctx.input_size, [torch.Generator()], steps=1, lr=0.1,
                        l2=1e-3, objective="softmax")


def test_default_layers():
    assert dd.default_layers([f"cnn.{i}" for i in range(20)]) == ["cnn.6", "cnn.19"]
    assert dd.default_layers(["a"]) == ["a"]
