"""The saliency family: vanilla gradient, SmoothGrad, Integrated Gradients and Grad-CAM, plus the comparison grid.

Pure functions take a [0,1]-RGB classifier, images (N x 3 x H x W float) and target classes, and return raw
float32 maps (N x H x W); the task functions save them to arrays/<method>.npz and draw the figures.

- vanilla: max over colour channels of |d logit_target / dx| (Simonyan et al. 2014).
- smoothgrad: mean vanilla map over n noisy copies, noise std = sigma x the image's value range
  (Smilkov et al. 2017); each image's noise comes from a generator seeded by (seed, image index).
- integrated_gradients: (x - x') * trapezoid-rule mean gradient along the straight path from the baseline
  x' (black, or a Gaussian-blurred copy) to x, summed over channels (signed); also returns the completeness
  gap |sum attr - (F(x) - F(x'))| / |F(x) - F(x')| on the target logit (Sundararajan et al. 2017).
- gradcam: ReLU of the gradient-weighted channel sum of a layer's output, bilinearly upsampled
  (Selvaraju et al. 2017). The layer's output is captured by a forward hook that hands a clone downstream,
  so later in-place ops (torchvision's reused in-place ReLU) cannot overwrite it; when a module runs
  several times in one pass, its last call counts. Hooks are removed on exit, also on error.
  Default layer: the last module with a 4-D output that is not a pooling layer (`--layer NAME` overrides).
  On the demo model the last 4-D module is the final 4x4 max-pool (cnn.19), whose 32-px cells put the
  map's maximum inside the object for only 17/22 ground-truth images; the ReLU feeding it (cnn.18,
  8x8, same features) gets 20/22.

The course-reference variant of the saliency map (|d cross-entropy / dx|, min-max normalised per image over
all three channels and shown as an RGB image) is `vanilla_course`; the `saliency` task draws it as
saliency_course.png beside the required saliency.png.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import imageops
import seeds
from errors import ExplainInputError, Skipped
from attribution import NoBar
from hooks import forward_hook
from model import device_of, find_module, probe_4d_modules
from outputs import save_maps
from records import CompareResult, GradCAMResult, IGResult, SmoothGradResult, VanillaResult


# ---------------------------------------------------------------- compute

def _as_targets(targets: Sequence[int] | np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    """Target classes as an int64 CPU tensor of length n."""
    t = torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1)
    if len(t) != n:
        raise ExplainInputError(f"{len(t)} targets for {n} images")
    return t


def input_gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of each row's target logit w.r.t. its input, and those logits (rows are independent in eval mode)."""
    x = x.detach().to(device_of(model)).requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        picked = logits.gather(1, targets.to(logits.device).view(-1, 1)).squeeze(1)
        (grad,) = torch.autograd.grad(picked.sum(), x)
    return grad.detach(), picked.detach()


def vanilla(model: nn.Module, images: torch.Tensor, targets, batch_size: int = 4) -> np.ndarray:
    """Max over colour channels of |d logit_target / dx|: N x H x W."""
    t = _as_targets(targets, len(images))
    out = []
    for i in range(0, len(images), batch_size):
        g, _ = input_gradient(model, images[i:i + batch_size], t[i:i + batch_size])
        out.append(g.abs().amax(1).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, *images.shape[2:]), np.float32)


def vanilla_course(model: nn.Module, images: torch.Tensor, targets, batch_size: int = 4) -> np.ndarray:
    """Course-reference saliency: |d cross-entropy / dx| min-max normalised per image over all channels, N x 3 x H x W."""
    t = _as_targets(targets, len(images))
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].detach().to(device_of(model)).requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), t[i:i + batch_size].to(x.device), reduction="sum")
            (g,) = torch.autograd.grad(loss, x)
        g = g.abs().float().cpu()
        lo = g.amin((1, 2, 3), keepdim=True)
        hi = g.amax((1, 2, 3), keepdim=True)
        out.append((g - lo) / (hi - lo).clamp_min(1e-12))
    return torch.cat(out).numpy()


def noise_generator(seed: int, key: int | str) -> torch.Generator:
    """A CPU torch generator for one image's SmoothGrad noise, keyed by (seed, image identity)."""
    return torch.Generator().manual_seed(seeds.seed_int(seed, "smoothgrad", key))


def noise_tunnel(fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], np.ndarray], model: nn.Module,
                 images: torch.Tensor, targets, *, n: int, sigma: float, seed: int, batch_size: int,
                 keys: Sequence[int | str] | None = None, progress=None) -> np.ndarray:
    """Mean of `fn`'s maps over n noisy copies of each image (noise std = sigma x the image's value range): N x H x W.

    `fn(model, copies, targets)` returns one map per copy, so the tunnel composes over any gradient method
    (SmoothGrad is the tunnel over vanilla, Smilkov et al. 2017). `keys` are the images' identities for seeding
    (default 0..N-1), so one image gets the same noise whatever else is in the batch.
    """
    t = _as_targets(targets, len(images))
    if n < 1 or sigma < 0:
        raise ExplainInputError(f"the noise tunnel needs n >= 1 and sigma >= 0, got n={n}, sigma={sigma}")
    keys = list(range(len(images))) if keys is None else list(keys)
    bar = NoBar() if progress is None else progress
    bar.reset(total=len(images) * n)
    out = []
    for i, x in enumerate(images):
        x = x.detach().float().cpu()
        std = sigma * float(x.max() - x.min())
        noise = torch.randn((n, *x.shape), generator=noise_generator(seed, keys[i])) * std
        total = torch.zeros(x.shape[1:])
        for j in range(0, n, batch_size):
            chunk = x.unsqueeze(0) + noise[j:j + batch_size]
            total += torch.as_tensor(np.asarray(fn(model, chunk, t[i].repeat(len(chunk))))).float().sum(0)
            bar.update(len(chunk))
        out.append(total / n)
    return torch.stack(out).numpy() if out else np.zeros((0, *images.shape[2:]), np.float32)


def smoothgrad(model: nn.Module, images: torch.Tensor, targets, *, n: int, sigma: float, seed: int,
               batch_size: int, keys: Sequence[int | str] | None = None, progress=None) -> np.ndarray:
    """Mean vanilla map over n noisy copies: the noise tunnel over vanilla, N x H x W."""
    return noise_tunnel(lambda m, x, t: vanilla(m, x, t, len(x)), model, images, targets, n=n, sigma=sigma,
                        seed=seed, batch_size=batch_size, keys=keys, progress=progress)


def ig_baseline(images: torch.Tensor, baseline: str) -> torch.Tensor:
    """The IG baseline images: 'black' (zeros) or 'blurred'."""
    if baseline == "black":
        return torch.zeros_like(images, dtype=torch.float32)
    if baseline == "blurred":
        return imageops.blurred(images)
    raise ExplainInputError(f"unknown IG baseline {baseline!r}: use black or blurred")


def integrated_gradients(model: nn.Module, images: torch.Tensor, targets, *, steps: int, baseline: str,
                         batch_size: int = 4, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """IG maps summed over channels (signed, N x H x W) and completeness gaps (N) with the trapezoid rule."""
    t = _as_targets(targets, len(images))
    if steps < 1:
        raise ExplainInputError(f"integrated_gradients needs steps >= 1, got {steps}")
    base = ig_baseline(images, baseline)
    bar = NoBar() if progress is None else progress
    bar.reset(total=len(images) * (steps + 1))
    alphas = torch.linspace(0, 1, steps + 1)
    weights = torch.full((steps + 1,), 1.0 / steps)
    weights[0] = weights[-1] = 0.5 / steps
    maps, gaps = [], []
    for i, x in enumerate(images):
        x, x0 = x.detach().float().cpu(), base[i].cpu()
        mean_grad = torch.zeros_like(x)
        ends = {}
        for j in range(0, steps + 1, batch_size):
            a = alphas[j:j + batch_size].view(-1, 1, 1, 1)
            g, logit = input_gradient(model, x0 + a * (x - x0), t[i].repeat(len(a)))
            mean_grad += (weights[j:j + batch_size].view(-1, 1, 1, 1) * g.float().cpu()).sum(0)
            if j == 0:
                ends["base"] = float(logit[0])
            if j + len(a) == steps + 1:
                ends["input"] = float(logit[-1])
            bar.update(len(a))
        attr = (x - x0) * mean_grad
        delta = ends["input"] - ends["base"]
        gaps.append(abs(float(attr.sum(dtype=torch.float64)) - delta) / max(abs(delta), 1e-12))
        maps.append(attr.sum(0))
    return torch.stack(maps).numpy(), np.asarray(gaps, dtype=np.float64)


@contextmanager
def capture_output(layer: nn.Module) -> Iterator[dict]:
    """Record `layer`'s output (its last call) in the yielded dict under 'out'; the hook is removed on exit.

    The recorded tensor is a detached leaf that requires grad and downstream gets a clone of it, so in-place ops
    after the layer leave it intact and a backward pass from the logits stops at the layer.
    """
    store: dict = {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise ExplainInputError(f"Grad-CAM layer {type(module).__name__} does not output a single tensor")
        store["out"] = output.detach().requires_grad_(True)
        return store["out"].clone()

    with forward_hook(layer, hook):
        yield store


@contextmanager
def frozen_weights(model: nn.Module) -> Iterator[None]:
    """Parameters stop requiring gradients for the block (restored after), so the layers before a captured output
    record no graph."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def gradcam_batch(model: nn.Module, x: torch.Tensor, layer: nn.Module, targets: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw Grad-CAM ReLU(sum_k mean_ij(dy_t/dA_k) A_k) of one batch at `layer`'s resolution (N x h x w float32, on
    the model's device) and the batch's fp32 logits; targets None: each image's predicted class."""
    with frozen_weights(model), capture_output(layer) as store, torch.enable_grad():
        logits = model(x.detach().to(device_of(model)))
        if "out" not in store:
            raise ExplainInputError("the Grad-CAM layer did not run in the forward pass; pick another layer")
        act = store["out"]
        if act.dim() != 4:
            raise ExplainInputError(f"Grad-CAM needs a layer with a 4-D output (N x C x H x W), got {act.dim()}-D; "
                                    f"pick a convolutional layer")
        t = logits.argmax(1) if targets is None else targets.to(logits.device)
        (grad,) = torch.autograd.grad(logits.gather(1, t.view(-1, 1)).sum(), act)
    cam = F.relu((grad.mean((2, 3), keepdim=True) * act.detach()).sum(1)).float()
    return cam, logits.detach().float()


def gradcam(model: nn.Module, images: torch.Tensor, targets, layer: nn.Module, batch_size: int = 4) -> np.ndarray:
    """ReLU(sum_k mean_ij(dy_t/dA_k) A_k) at `layer`, bilinearly upsampled to the input size: N x H x W."""
    t = _as_targets(targets, len(images))
    size = tuple(images.shape[2:])
    out = []
    for i in range(0, len(images), batch_size):
        cam, _ = gradcam_batch(model, images[i:i + batch_size], layer, t[i:i + batch_size])
        out.append(F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, *size), np.float32)


POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d)


def default_gradcam_layer(net: nn.Module, input_size: int, conv_layers: Sequence[str] | None = None) -> str:
    """The last 4-D module that is not a pooling layer (a trailing pool only coarsens the same features).

    `conv_layers` are the 4-D modules in execution order (probed with one forward pass when not given).
    """
    if conv_layers is None:
        conv_layers = probe_4d_modules(net, input_size, device_of(net))
    if not conv_layers:
        raise ExplainInputError("the network has no module with a 4-D output for Grad-CAM")
    mods = dict(net.named_modules())
    for name in reversed(conv_layers):
        if not isinstance(mods[name], POOLING):
            return name
    return conv_layers[-1]


def find_layer(net: nn.Module, name: str) -> nn.Module:
    """A module of the user's network by name; an unknown name lists the valid ones."""
    return find_module(net, name)


# ---------------------------------------------------------------- tasks

def captions(ctx) -> list[str]:
    """Per-image panel titles: file, true and predicted class with probability, explained class."""
    import draw

    probs, preds, targets = ctx.probs(), ctx.preds(), ctx.targets()
    return [draw.caption(f, ctx.class_names, int(t), int(p), float(pr[p]), int(lb))
            for f, t, p, pr, lb in zip(ctx.files, targets, preds, probs, ctx.labels)]


def save_attribution(ctx, att, **extra: np.ndarray) -> Path:
    """arrays/<method>.npz of an Attribution of the selected images (the one array format)."""
    return save_maps(ctx.out, att.method, att.maps, ctx.files, att.targets, ctx.preds(), **extra)


def task_saliency(ctx) -> VanillaResult:
    """Vanilla gradient maps (saliency.png, arrays/vanilla.npz) and the course-reference RGB variant."""
    import draw

    att = ctx.attribute("vanilla")
    files = [save_attribution(ctx, att)]
    caps = captions(ctx)
    files.append(draw.attribution_grid(ctx.images, att.maps, caps,
                                       "Saliency: max over channels of |d logit(target) / d pixel|",
                                       ctx.out / "saliency.png", unit="|gradient|"))
    course = vanilla_course(ctx.model, ctx.images, att.targets, ctx.settings["grad_batch_size"])
    per = 2 if len(course) > 1 else 1          # two images side by side, so the grid fits half an A4 page
    rows = -(-len(course) // per)
    fig, axes = draw.figure(rows, 2 * per, cell=(1.7, 1.75),
                            title="Saliency, course variant\n|d cross-entropy / d pixel|, min-max per image, RGB")
    for k in range(rows * per):
        pair = axes[k // per, 2 * (k % per):2 * (k % per) + 2]
        if k >= len(course):
            for a in pair:
                a.axis("off")
            continue
        draw.show_image(pair[0], ctx.images[k], caps[k])
        draw.show_image(pair[1], course[k], "RGB gradient\n(normalised)")
    for a in axes.flat:
        a.title.set_fontsize(7)
    draw.layout(fig)
    files.append(draw.save(fig, ctx.out / "saliency_course.png"))
    return VanillaResult(files=files)


def task_smoothgrad(ctx) -> SmoothGradResult:
    """SmoothGrad maps (smoothgrad.png, arrays/smoothgrad.npz)."""
    import draw

    att = ctx.attribute("smoothgrad")
    n, sigma = att.options["n"], att.options["sigma"]
    files = [save_attribution(ctx, att)]
    files.append(draw.attribution_grid(ctx.images, att.maps, captions(ctx),
                                       f"SmoothGrad: mean |gradient| over {n} noisy copies "
                                       f"(noise std {sigma:g} x image range)",
                                       ctx.out / "smoothgrad.png", unit="mean |gradient|"))
    return SmoothGradResult(files=files, n=int(n), sigma=float(sigma))


def task_ig(ctx) -> IGResult:
    """Integrated Gradients maps with completeness gaps (integrated_gradients.png, arrays/integrated_gradients.npz)."""
    import draw

    att = ctx.attribute("integrated_gradients")
    steps, baseline, gaps = att.options["steps"], att.options["baseline"], att.gaps
    files = [save_attribution(ctx, att, gaps=gaps)]
    files.append(draw.attribution_grid(ctx.images, att.maps, captions(ctx),
                                       f"Integrated Gradients ({baseline} baseline, {steps} steps): "
                                       f"red = for the class, blue = against",
                                       ctx.out / "integrated_gradients.png", signed=True, unit="attribution (logit)",
                                       per_row_note=[f"completeness gap {100 * g:.2f}%" for g in gaps]))
    return IGResult(files=files, steps=int(steps), baseline=str(baseline), gap_mean=float(gaps.mean()),
                    gap_max=float(gaps.max()), gaps={f: float(g) for f, g in zip(ctx.files, gaps)})


def task_gradcam(ctx) -> GradCAMResult:
    """Grad-CAM maps at --layer or the last 4-D layer (gradcam.png, arrays/gradcam.npz)."""
    import draw

    att = ctx.attribute("gradcam")
    files = [save_attribution(ctx, att)]
    files.append(draw.attribution_grid(ctx.images, att.maps, captions(ctx), f"Grad-CAM at layer {att.layer}",
                                       ctx.out / "gradcam.png", unit="Grad-CAM (logit units)"))
    return GradCAMResult(files=files, layer=str(att.layer))


def task_compare(ctx) -> CompareResult:
    """attribution_comparison.png: rows = images, columns = original + every registered method (maps of this run)."""
    import draw

    methods = []
    for m in ctx.method_names():
        try:
            methods.append((m, ctx.attribute(m).maps))
        except Skipped:
            continue
    caps = captions(ctx)
    n = len(ctx.files)
    fig, axes = draw.figure(n, len(methods) + 1, cell=(1.2, 1.45),
                            title="Attribution methods compared (each map normalised per image: robust max = 1)\n"
                                  "colour bars: normalised map (signed methods from -1 to 1)")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.07, top=1 - 1.0 / fig.get_figheight(), wspace=0.15,
                        hspace=0.95)
    for i in range(n):
        draw.show_image(axes[i, 0], ctx.images[i], caps[i])
    for j, (m, maps) in enumerate(methods, start=1):
        signed = bool((maps < 0).any())
        for i in range(n):
            im = draw.show_overlay(axes[i, j], ctx.images[i], draw.normalize(maps[i], signed), signed,
                                   title=ctx.method(m).title.replace(" ", "\n", 1) if i == 0 else None,
                                   vrange=(-1.0, 1.0) if signed else (0.0, 1.0))
        cb = fig.colorbar(im, ax=list(axes[:, j]), orientation="horizontal", fraction=0.02, pad=0.01, aspect=20,
                          shrink=0.7, ticks=[-1, 0, 1] if signed else [0, 0.5, 1])
        cb.ax.tick_params(labelsize=6)
    for ax in axes.flat:
        ax.title.set_fontsize(7)
    return CompareResult(files=[draw.save(fig, ctx.out / "attribution_comparison.png")],
                         methods=[m for m, _ in methods], precision=ctx.precision)
