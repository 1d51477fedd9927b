"""Deep Dream (task `deepdream`) and class-model visualization (task `classviz`).

Deep Dream (Mordvintsev et al. 2015): gradient ascent on the input image to amplify what a layer responds to.
Settings (settings.py, `--set key=value`): dream_steps=10 steps per octave, dream_octaves=3 octaves at
dream_octave_scale=1.4 (details carried from each octave to the next), dream_lr=0.01 (per step, the gradient
normalised to a mean absolute value of 1, so each pixel moves about 0.01), dream_objective=l2: `l2` (L2 norm
of the layer's activation), `mean`, `filter:N` (mean of channel N) or `logit:C` (class C's logit; the layer
is then ignored). Every step rolls the image by a seeded random shift of up to 8 pixels; pixels stay in
[0,1]. Layers: --layer (repeatable), default a shallow one (about 1/3 down ctx.conv_layers()) and the last.

Class models (Simonyan et al. 2014, section 2): for each shown class, an image maximising
O_c(I) - classviz_l2 * ||I - 0.5||^2 (default 0.001) from seeded noise, where O_c is the class's log-softmax
(classviz_objective=logprob, the default) or Simonyan's unnormalised logit S_c (`logit`). The log-softmax also
pushes the other classes down: with classes that share a cue (the demo's Bread and Fried food share a colour),
raising S_c raises the partner's logit too, and the logit's picture ends as the partner's. Adam with
classviz_lr=0.15 for classviz_steps=32 steps (--full: 128), plain pixels regularised by a random roll each step and a light Gaussian
blur every 4th step (Yosinski et al. 2015), clamped to [0,1]. The classes: every class when there are at most
CLASSVIZ_MAX (12), else the selected images' target and predicted classes (up to 12), or --classes. They are
optimised in chunks of grad_batch_size images, so memory does not grow with the number of classes; gradients are
taken for the images only (the model's parameters keep .grad None).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import imageops
from errors import UserError
from settings import parse_ids
from hooks import Tap
from records import ClassModelsResult, DeepDreamResult
from model import device_of

CLASSVIZ_MAX = 12   # class models drawn by default; more classes pick the selected images' ones

Objective = Callable[[torch.Tensor], torch.Tensor]   # images N x 3 x H x W -> per-image values N


def parse_objective(spec: str) -> tuple[str, int | None]:
    """'l2' | 'mean' | 'filter:N' | 'logit:C' -> (kind, index)."""
    kind, _, idx = spec.partition(":")
    if kind in ("l2", "mean") and not idx:
        return kind, None
    if kind in ("filter", "logit") and idx.isdigit():
        return kind, int(idx)
    raise UserError(f"dream_objective {spec!r}: use l2, mean, filter:N or logit:C")


def layer_objective(model: nn.Module, layer: nn.Module, kind: str = "l2", channel: int | None = None) -> Objective:
    """Per-image L2 norm / mean of a layer's activation (or mean of one channel), forward truncated at the layer."""
    def objective(x: torch.Tensor) -> torch.Tensor:
        with Tap(layer, stop=True) as tap:
            act = tap.run(model, x)
        if kind == "filter":
            if not 0 <= channel < act.shape[1]:
                raise UserError(f"dream_objective filter:{channel}: the layer has {act.shape[1]} channels")
            return act[:, channel].flatten(1).mean(1)
        flat = act.flatten(1)
        return flat.norm(dim=1) if kind == "l2" else flat.mean(1)
    return objective


def logit_objective(model: nn.Module, cls: int, input_size: int) -> Objective:
    """Per-image logit of class `cls` (smaller octaves are resized to the model's input size first)."""
    def objective(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != input_size or x.shape[-2] != input_size:
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False)
        return model(x)[:, cls]
    return objective


def _roll(x: torch.Tensor, shifts: list[tuple[int, int]]) -> torch.Tensor:
    """Roll each image of a batch by its own (dy, dx)."""
    return torch.stack([torch.roll(xi, s, dims=(1, 2)) for xi, s in zip(x, shifts)])


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                         antialias=size[0] < x.shape[-2])


def dream(objective: Objective, images: torch.Tensor, generators: list[torch.Generator], *, steps: int,
          octaves: int, octave_scale: float, lr: float, jitter: int = 8,
          batch_size: int = 4) -> torch.Tensor:
    """Deep Dream: per-octave gradient ascent on `objective`, one generator per image; returns images in [0,1]."""
    out = []
    for i in range(0, len(images), batch_size):
        out.append(_dream_batch(objective, images[i:i + batch_size], generators[i:i + batch_size], steps,
                                octaves, octave_scale, lr, jitter))
    return torch.cat(out)


def _dream_batch(objective: Objective, images: torch.Tensor, generators: list[torch.Generator], steps: int,
                 octaves: int, octave_scale: float, lr: float, jitter: int) -> torch.Tensor:
    """Deep Dream on one batch."""
    h, w = images.shape[-2:]
    sizes = [(max(16, round(h / octave_scale ** k)), max(16, round(w / octave_scale ** k)))
             for k in reversed(range(octaves))]
    detail = torch.zeros_like(_resize(images, sizes[0]))
    x = images
    for size in sizes:
        base = _resize(images, size)
        x = (base + _resize(detail, size)).clamp(0, 1)
        for _ in range(steps):
            shifts = [tuple(torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist()) for g in generators]
            xr = _roll(x, shifts).requires_grad_(True)
            grad, = torch.autograd.grad(objective(xr).sum(), xr)
            grad = _roll(grad, [(-dy, -dx) for dy, dx in shifts])
            grad = grad / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
            x = (x + lr * grad).clamp(0, 1).detach()
        detail = x - base
    return x


def evaluate(objective: Objective, images: torch.Tensor, batch_size: int = 8) -> np.ndarray:
    """Objective values of a batch of images (no jitter), as numpy."""
    with torch.no_grad():
        return torch.cat([objective(images[i:i + batch_size]).float().cpu()
                          for i in range(0, len(images), batch_size)]).numpy()


CLASSVIZ_OBJECTIVES = ("logprob", "logit")


def class_models(model: nn.Module, classes: list[int], size: int, generators: list[torch.Generator],
                 *, steps: int, lr: float, l2: float, objective: str, jitter: int = 4, blur_every: int = 4,
                 blur_sigma: float = 0.5, chunk: int | None = None
                 ) -> tuple[torch.Tensor, np.ndarray]:
    """Simonyan et al. class models, one image per class, optimised `chunk` at a time (default: all at once);
    returns (images K x 3 x size x size, softmax probs K x C). Each image depends only on its own generator."""
    if objective not in CLASSVIZ_OBJECTIVES:
        raise UserError(f"classviz_objective {objective!r}: use one of {', '.join(CLASSVIZ_OBJECTIVES)}")
    chunk = max(1, chunk or len(classes))
    parts = [_class_models_chunk(model, classes[i:i + chunk], size, generators[i:i + chunk], steps, lr, l2, jitter,
                                 blur_every, blur_sigma, objective) for i in range(0, len(classes), chunk)]
    return torch.cat([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _class_models_chunk(model: nn.Module, classes: list[int], size: int, generators: list[torch.Generator],
                        steps: int, lr: float, l2: float, jitter: int, blur_every: int, blur_sigma: float,
                        objective: str) -> tuple[torch.Tensor, np.ndarray]:
    """Class models of one chunk of classes."""
    device = device_of(model)
    init = torch.stack([0.5 + 0.1 * torch.randn(3, size, size, generator=g) for g in generators])
    x = init.clamp(0, 1).to(device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    rows = torch.arange(len(classes), device=device)
    cls = torch.as_tensor(classes, device=device)
    for step in range(steps):
        shifts = [tuple(torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist()) for g in generators]
        logits = model(_roll(x, shifts)).float()
        score = torch.log_softmax(logits, 1) if objective == "logprob" else logits
        loss = -score[rows, cls].sum() + l2 * ((x - 0.5) ** 2).sum()
        opt.zero_grad()
        loss.backward(inputs=[x])   # the image's gradient only: the shared model's parameters keep .grad None
        opt.step()
        with torch.no_grad():
            if blur_every and (step + 1) % blur_every == 0 and step + 1 < steps:
                x.copy_(imageops.gaussian_blur(x, blur_sigma))
            x.clamp_(0, 1)
    x = x.detach()
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), 1).cpu().numpy()
    return x.cpu(), probs


def pick_classes(num_classes: int, spec: str | None, targets: np.ndarray, preds: np.ndarray,
                 limit: int = CLASSVIZ_MAX) -> list[int]:
    """The classes to draw: --classes, else all when there are at most `limit`, else each selected image's target
    and predicted class in image order (up to `limit`)."""
    if spec:
        return parse_ids(spec, "--classes", num_classes, f"the model has {num_classes} classes")
    if num_classes <= limit:
        return list(range(num_classes))
    seen = [int(c) for pair in zip(targets, preds) for c in pair]
    return list(dict.fromkeys(seen))[:limit]


def default_layers(conv_layers: list[str]) -> list[str]:
    """A shallow layer (about a third of the way down) and the last 4-D layer."""
    if not conv_layers:
        raise UserError("the network has no layer with a 4-D output to dream on; pass --layer NAME")
    return list(dict.fromkeys([conv_layers[len(conv_layers) // 3], conv_layers[-1]]))


def task_deepdream(ctx) -> DeepDreamResult:
    """Dream the selected images on a shallow and a deep layer; figure with the objective's increase."""
    import draw

    s = ctx.settings
    spec = s.get("dream_objective", "l2")
    kind, index = parse_objective(spec)
    if kind == "logit":
        if not 0 <= index < ctx.num_classes:
            raise UserError(f"dream_objective {spec}: the model has {ctx.num_classes} classes (0..{ctx.num_classes - 1})")
        layers = [f"logit of {ctx.class_names[index]}"]
        objectives = [logit_objective(ctx.infer_model(), index, ctx.input_size)]
    else:
        layers = list(ctx.opts.layer) or default_layers(ctx.layers_or_skip("Deep Dream"))
        objectives = [layer_objective(ctx.infer_model(), ctx.layer(name), kind, index) for name in layers]
    images = ctx.images.to(ctx.device)
    what = {"l2": "L2 norm", "mean": "mean", "filter": f"filter {index} mean", "logit": "logit"}[kind]
    dreamed, results = [], {}
    for name, objective in zip(layers, objectives):
        gens = [ctx.torch_generator("deepdream", name, idx) for idx in ctx.indices]
        out = dream(objective, images, gens, steps=s["dream_steps"], octaves=s["dream_octaves"],
                    octave_scale=s["dream_octave_scale"], lr=s["dream_lr"], batch_size=s["grad_batch_size"])
        before, after = evaluate(objective, images, s["batch_size"]), evaluate(objective, out, s["batch_size"])
        dreamed.append(out.cpu())
        results[name] = {"before": before.tolist(), "after": after.tolist(),
                         "increase": (after / np.where(before == 0, np.nan, before)).tolist()}
    probs, preds = ctx.probs(), ctx.preds()
    title = (f"Deep Dream: gradient ascent on the {what} of a layer's activation\n"
             f"{s['dream_octaves']} octaves x {s['dream_steps']} steps, scale {s['dream_octave_scale']}, "
             f"step {s['dream_lr']}; above each dream: its {what} before -> after")
    n, k = len(ctx.indices), 1 + len(layers)
    cols = min(n, 4)                 # one column per image: the original on top, its dreams below it
    blocks = -(-n // cols)
    fig, axes = draw.figure(k * blocks, cols, cell=(1.75, 1.9), title=title, snug=True)
    for i in range(blocks * cols):
        block, col = divmod(i, cols)
        ax = axes[k * block:k * block + k, col]
        if i >= n:
            for a in ax:
                a.axis("off")
            continue
        draw.show_image(ax[0], ctx.images[i], draw.caption(ctx.files[i], ctx.class_names, None, preds[i],
                                                             probs[i, preds[i]], ctx.labels[i]))
        for j, name in enumerate(layers):
            r = results[name]
            b, a = r["before"][i], r["after"][i]
            gain = f"x{a / b:.1f}" if b > 0 else f"+{a - b:.3g}"
            draw.show_image(ax[j + 1], dreamed[j][i], f"dreamed on {name}\n{b:.4g} -> {a:.4g} ({gain})")
    for a in axes.flat:
        a.title.set_fontsize(7)
    return DeepDreamResult(files=[draw.save(fig, ctx.out / "deepdream.png")], precision=ctx.precision,
                           objective=spec, images=list(ctx.files), layers=results)


def task_classviz(ctx) -> ClassModelsResult:
    """One class-model image per class (pick_classes), in chunks; gallery with the reached probability."""
    import draw

    s = ctx.settings
    classes = pick_classes(ctx.num_classes, ctx.opts.classes, ctx.targets(), ctx.preds())
    gens = [ctx.torch_generator("classviz", c) for c in classes]
    images, probs = class_models(ctx.infer_model(), classes, ctx.input_size, gens, steps=s["classviz_steps"],
                                 lr=s["classviz_lr"], l2=s["classviz_l2"], chunk=int(s["grad_batch_size"]),
                                 objective=s["classviz_objective"])
    reached = probs[np.arange(len(classes)), classes]
    ncols = min(6, len(classes))
    nrows = -(-len(classes) // ncols)
    which = ("" if len(classes) == ctx.num_classes else
             f"\n{len(classes)} of {ctx.num_classes} classes ("
             + ("--classes" if ctx.opts.classes else "the selected images' target and predicted classes") + ")")
    goal = "log-probability" if s["classviz_objective"] == "logprob" else "logit"
    title = (f"Class models (Simonyan et al. 2014): images maximising each class {goal} from noise\n"
             f"{s['classviz_steps']} Adam steps, L2 {s['classviz_l2']:g}, jitter + blur; "
             f"title = the model's probability of that class{which}")
    fig, axes = draw.figure(nrows, ncols, cell=(2.3, 2.9), title=title, extra_width=2.3 * max(0, 4 - ncols),
                            snug=True)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    for k, (c, ax) in enumerate(zip(classes, axes.flat)):
        top = int(probs[k].argmax())
        note = "" if top == c else f"\n(top: {ctx.class_names[top]} {probs[k, top]:.2f})"
        draw.show_image(ax, images[k], f"{draw.readable(ctx.class_names[c])}\np = {reached[k]:.3f}{note}")
        ax.title.set_fontsize(7)
    return ClassModelsResult(files=[draw.save(fig, ctx.out / "class_models.png")], precision=ctx.precision,
                             reached={ctx.class_names[c]: float(p) for c, p in zip(classes, reached)})
