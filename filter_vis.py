"""Filter visualization: images optimised from noise to excite one filter (plain and robust), and activation maps.

`plain` is the course recipe: raw pixels from uniform noise, Adam, pixels clamped to [0,1].
`robust` follows Lucid (Olah et al., "Feature Visualization", Distill 2017): the image lives in a
decorrelated-colour Fourier basis with a 1/f spectrum scale, goes through a sigmoid to [0,1], and is padded,
jittered, scaled and rotated a little at every step. No upsampling to 224 and no ImageNet normalisation:
the model wrapper already does the user's normalisation, and our models take 128-px images.
Filters are optimised in fixed-size chunks (one forward/backward per step for the chunk); every random draw
comes from the filter's own generator, so a filter's result does not depend on its chunk.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import dataset
from errors import UserError
from settings import parse_ids
from hooks import Tap, forward_hook
from records import FiltersResult

# Course default for the TA's HW5 model (cnn.15 = the ReLU after the 2nd conv of the 2nd stack).
HW5TA_DEFAULT_LAYER = "cnn.15"
HW3_DEFAULT_ALIAS = "block3"

# Lucid's colour-correlation square root (ImageNet statistics); columns normalised by the largest norm.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_DECORRELATE = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()

# Robust-mode transforms, scaled down from Lucid's 224-px values (pad 12, jitter 8, scale 0.9-1.1, +-10 deg).
ROBUST_PAD = 6          # pixels of constant 0.5 around the image
ROBUST_JITTER = 4.0     # max shift in pixels
ROBUST_SCALE = 0.05     # scale drawn in [1 - s, 1 + s]
ROBUST_ANGLE = 5.0      # rotation drawn in [-a, a] degrees
ROBUST_INIT_SD = 0.01   # std of the initial Fourier coefficients
ROBUST_DECAY = 1.0      # spectrum scale 1/f**decay (Lucid: 1)
# Robust mode only (plain stays the exact course recipe): a filter that is zero everywhere on the start image has
# no gradient through its ReLU, so for the first LEAK_STEPS steps a tapped nn.ReLU passes LEAK_SLOPE x the gradient
# of its input too (forward values unchanged), in the spirit of Lucid's redirected ReLU gradient.
# Dataset examples: per visualised filter the EXAMPLE_K evaluation images with the highest mean activation, from at
# most EXAMPLE_LIMIT images of the split (evenly spaced in listing order beyond that: a deterministic subset).
EXAMPLE_K = 4
EXAMPLE_LIMIT = 512
LEAK_STEPS = 16
LEAK_SLOPE = 0.1


# What an optimised image shows (`filter_pattern`): colour names by hue sector (upper bounds in degrees, HSV hue).
HUE_NAMES = (("red", 15.0), ("orange", 45.0), ("yellow", 70.0), ("green", 165.0), ("cyan", 195.0), ("blue", 255.0),
             ("purple", 285.0), ("magenta", 345.0), ("red", 360.0))
GREY_CHROMA = 0.2        # a pixel whose max - min channel value is below this is grey (white, grey or black)
GREY_IMAGE = 2 / 3       # an image with more grey pixels than this is grey
MIXED_HUE = 0.25         # a hue holding less than this share of the coloured pixels does not dominate: "mixed"
STRIPE_SIGMA = 1.0       # Gaussian pre-smoothing (pixels) before the gradients of the structure tensor
STRIPE_COHERENCE = 0.25  # below this coherence the image has no clear stripes (see filter_pattern)


@dataclass(frozen=True)
class FilterPattern:
    """What one optimised image shows: its dominant colour and the orientation of its stripes."""

    colour: str            # red, orange, yellow, green, cyan, blue, purple, magenta; grey; mixed (no hue dominates)
    colour_share: float    # share of the image's pixels with that colour (mixed: the coloured pixels' share)
    angle: float | None    # the stripes' direction in degrees, [0, 180): 0 horizontal, 90 vertical, 45 like '/'
    coherence: float       # 0 (no preferred orientation) .. 1 (perfectly parallel stripes)
    stripes: bool          # coherence >= STRIPE_COHERENCE

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict (floats rounded to 4 digits)."""
        out = asdict(self)
        for k in ("colour_share", "angle", "coherence"):
            if out[k] is not None:
                out[k] = round(float(out[k]), 4)
        return out


def colour_names(image: np.ndarray) -> np.ndarray:
    """H x W x 3 image in [0,1] -> H x W array of colour names (grey where the chroma max - min < GREY_CHROMA)."""
    rgb = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = hi - lo
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(hi == r, ((g - b) / safe) % 6, np.where(hi == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60.0
    bounds = np.array([b for _, b in HUE_NAMES])
    names = np.array([n for n, _ in HUE_NAMES] + ["red"])
    out = names[np.searchsorted(bounds, hue % 360.0, side="right")]
    return np.where(chroma < GREY_CHROMA, "grey", out)


def _smooth(channel: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of one H x W channel (edges repeated)."""
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-x ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    out = np.pad(channel, r, mode="edge")
    out = sum(w * out[i:i + out.shape[0] - 2 * r, :] for i, w in enumerate(k))
    return sum(w * out[:, i:i + out.shape[1] - 2 * r] for i, w in enumerate(k))


def stripe_orientation(image: np.ndarray, sigma: float = STRIPE_SIGMA) -> tuple[float | None, float]:
    """The image's dominant stripe direction (degrees in [0, 180) as seen: 0 horizontal, 90 vertical, 45 like '/';
    None when the image has no gradient) and its coherence, from the structure tensor summed over the pixels and the
    three colour channels (so stripes of equal brightness but different colour count too)."""
    rgb = np.asarray(image, dtype=np.float64)
    jxx = jyy = jxy = 0.0
    for c in range(rgb.shape[-1]):
        ch = _smooth(rgb[..., c], sigma) if sigma > 0 else rgb[..., c]
        gy, gx = np.gradient(ch)            # gy along rows (downwards)
        gy = -gy                            # upwards, so angles read as on the page
        jxx, jyy, jxy = jxx + float((gx * gx).sum()), jyy + float((gy * gy).sum()), jxy + float((gx * gy).sum())
    energy = jxx + jyy
    if energy <= 1e-12 * rgb[..., 0].size:
        return None, 0.0
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / energy
    gradient = 0.5 * math.degrees(math.atan2(2 * jxy, jxx - jyy))   # the direction the brightness changes along
    return round((gradient + 90.0) % 180.0, 6) % 180.0, min(1.0, coherence)


def filter_pattern(image: np.ndarray) -> FilterPattern:
    """Dominant colour and stripe orientation of an H x W x 3 image in [0,1] (a filter's optimised image).

    Colour: a pixel is grey when its chroma (max - min of its channels: HSV saturation times value) is below
    GREY_CHROMA = 0.2, which takes in white, black and pale off-whites; every other pixel is named by its HSV hue
    sector (HUE_NAMES). The image is grey when more than GREY_IMAGE = 2/3 of its pixels are grey; else its colour is
    the most frequent hue among the coloured pixels, with that hue's share of all pixels, or "mixed" (with the
    coloured pixels' share) when no hue holds MIXED_HUE = 25% of them (many-coloured dot lattices). The optimised
    images have saturated white and dark areas around the coloured pattern, so a plain majority over all pixels would
    call most of them grey.

    Orientation: the structure tensor J = sum of [gx^2, gx gy; gx gy, gy^2] over the pixels and channels of the
    image blurred by STRIPE_SIGMA = 1 px (so single-pixel noise does not decide); the stripes run perpendicular to
    J's main eigenvector. Coherence (l1 - l2) / (l1 + l2) of J's eigenvalues is the share of the gradient energy
    that is oriented beyond an isotropic remainder: parallel stripes give 1, uniform noise about 1/sqrt(pixels)
    (0.01 at 128 x 128), a checkerboard or a regular dot lattice near 0. "No clear stripes" below STRIPE_COHERENCE =
    0.25, a quarter of the gradient energy sharing one orientation: on the demo model's block3 filters (robust images,
    16 filters) the dot lattices and blotches reach at most 0.23 and the images with visible stripes at least 0.27,
    so the threshold sits in that gap, 25 times above noise.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {img.shape}")
    names = colour_names(img).ravel()
    coloured = names[names != "grey"]
    if len(coloured) < (1 - GREY_IMAGE) * len(names):
        colour, share = "grey", 1 - len(coloured) / len(names)
    else:
        hues, counts = np.unique(coloured, return_counts=True)
        best = int(np.argmax(counts))                     # ties: the first name in alphabetical order
        if counts[best] < MIXED_HUE * len(coloured):
            colour, share = "mixed", len(coloured) / len(names)
        else:
            colour, share = str(hues[best]), counts[best] / len(names)
    angle, coherence = stripe_orientation(img)
    return FilterPattern(colour=colour, colour_share=float(share), angle=angle, coherence=float(coherence),
                         stripes=angle is not None and coherence >= STRIPE_COHERENCE)


def filter_patterns(images: np.ndarray, filters: Sequence[int]) -> dict[str, dict[str, Any]]:
    """filter id -> filter_pattern(...).record() of F x 3 x H x W optimised images."""
    return {str(f): filter_pattern(np.moveaxis(img, 0, -1)).record() for f, img in zip(filters, images)}


def block_aliases(net: nn.Module) -> dict[str, str]:
    """`blockK` -> the last ReLU before the K-th max-pool of a `cnn` Sequential (hw3, hw5ta); else empty."""
    seq = getattr(net, "cnn", None)
    if not isinstance(seq, nn.Sequential):
        return {}
    aliases: dict[str, str] = {}
    last_relu = None
    for i, mod in enumerate(seq):
        if isinstance(mod, nn.ReLU):
            last_relu = f"cnn.{i}"
        elif isinstance(mod, nn.MaxPool2d) and last_relu:
            aliases[f"block{len(aliases) + 1}"] = last_relu
    return aliases


def default_layer(arch: str, net: nn.Module, conv_layers: Sequence[str]) -> str:
    """A mid-level layer: block3's ReLU for hw3, cnn.15 for hw5ta, else the middle module with a 4-D output."""
    aliases = block_aliases(net)
    if arch == "hw3" and HW3_DEFAULT_ALIAS in aliases:
        return aliases[HW3_DEFAULT_ALIAS]
    if arch == "hw5ta" and HW5TA_DEFAULT_LAYER in dict(net.named_modules()):
        return HW5TA_DEFAULT_LAYER
    if not conv_layers:
        raise UserError("the network has no module with a 4-D output: nothing to visualise as filters")
    return conv_layers[len(conv_layers) // 2]


def resolve_layer(net: nn.Module, name: str) -> str:
    """A module name or `blockK` alias -> module name; unknown names raise a UserError listing valid ones."""
    from model import find_module

    aliases = block_aliases(net)
    if name in aliases:
        return aliases[name]
    try:
        find_module(net, name)
    except UserError as exc:
        if aliases:
            raise UserError(f"{exc}; aliases: {', '.join(f'{a}={n}' for a, n in aliases.items())}") from None
        raise
    return name


def parse_filters(spec: str | None, channels: int, count: int) -> list[int]:
    """--filters as ids (default: the first `count`); out-of-range ids raise a UserError."""
    if not spec:
        return list(range(min(count, channels)))
    return parse_ids(spec, "--filters", channels, f"the layer has {channels} filters")


def filter_means(model: nn.Module, module: nn.Module, x: torch.Tensor, filters: Sequence[int]) -> torch.Tensor:
    """Mean activation of filters[i] on image x[i] (the model truncated after `module`)."""
    with Tap(module, stop=True) as tap:
        act = tap.run(model, x)
    return act[torch.arange(len(filters)), torch.as_tensor(list(filters))].mean(dim=(1, 2))


def activation_maps(model: nn.Module, module: nn.Module, images: torch.Tensor, filters: Sequence[int],
                    device: torch.device, batch_size: int) -> np.ndarray:
    """Activations of the filters on real images: N x F x h x w float32."""
    out = []
    with torch.no_grad(), Tap(module, stop=True) as tap:
        for i in range(0, len(images), batch_size):
            act = tap.run(model, images[i:i + batch_size].to(device))
            out.append(act[:, list(filters)].float().cpu())
    return torch.cat(out).numpy()


def example_subset(n: int, limit: int = EXAMPLE_LIMIT) -> list[int]:
    """Indices of the images scanned for dataset examples: all of a split up to `limit`, else `limit` evenly spaced
    ones in listing order (deterministic)."""
    if n <= limit:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


def top_examples(model: nn.Module, module: nn.Module, images: torch.Tensor, filters: Sequence[int], k: int,
                 device: torch.device, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Dataset examples (Olah et al. 2017): per filter the k images with the highest mean activation (F x k indices,
    ties to the earlier image) and those activations (F x k), from one batched pass through the truncated model."""
    means = []
    with torch.no_grad(), Tap(module, stop=True) as tap:
        for i in range(0, len(images), batch_size):
            act = tap.run(model, images[i:i + batch_size].to(device))
            means.append(act[:, list(filters)].float().mean(dim=(2, 3)).cpu())
    m = torch.cat(means).numpy().T                       # F x N
    order = np.argsort(-m, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(m, order, axis=1)


def draw_examples_figure(filter_images: np.ndarray, examples: torch.Tensor, maps: np.ndarray, titles: list[list[str]],
                         filters: Sequence[int], layer_label: str, title: str, path: Path) -> Path:
    """Per filter: its optimised image, then its top-activating dataset images with the activation map over each;
    two filters per row."""
    import draw

    nf, k = maps.shape[:2]
    rows, per = draw.item_rows(nf, k + 1, max_cols=2 * (k + 1))
    fig, axes = draw.figure(rows, per * (k + 1), cell=(1.05, 1.25), title=title, snug=True)
    size = examples.shape[-1]
    for r, block in enumerate(draw.item_panels(axes, nf, k + 1, per)):
        draw.show_image(block[0], filter_images[r], f"{layer_label} #{filters[r]}\noptimised")
        for j in range(k):
            up = F.interpolate(torch.from_numpy(maps[r, j])[None, None].float(), size=(size, size),
                               mode="bilinear", align_corners=False)[0, 0].numpy()
            draw.show_overlay(block[j + 1], examples[r * k + j], up, title=titles[r][j])
    for ax in axes.flat:
        ax.title.set_fontsize(6)
    return draw.save(fig, path)


def _fourier_scale(size: int) -> torch.Tensor:
    """1/f amplitude scale of the rfft2 coefficients of a size x size image (flat spectrum after scaling)."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    return 1.0 / torch.sqrt(fx ** 2 + fy ** 2).clamp(min=1.0 / size) ** ROBUST_DECAY


def fourier_image(spec: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients (N x 3 x S x S//2+1 x 2) -> decorrelated colours -> sigmoid: N x 3 x S x S in [0,1]."""
    size = spec.shape[2]
    img = torch.fft.irfft2(torch.view_as_complex(spec) * scale, s=(size, size), norm="ortho") / 4.0
    img = torch.einsum("ij,njhw->nihw", COLOR_DECORRELATE.to(img), img)
    return torch.sigmoid(img)


def random_transform(x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Pad with grey, then shift/scale/rotate each image by its own draws (N x 4 uniforms in [0,1])."""
    n, _, size, _ = x.shape
    padded = F.pad(x, [ROBUST_PAD] * 4, value=0.5)
    full = size + 2 * ROBUST_PAD
    u = draws.to(x) * 2 - 1
    shift = u[:, :2] * ROBUST_JITTER * 2 / full
    scale = 1 + u[:, 2] * ROBUST_SCALE
    angle = u[:, 3] * math.radians(ROBUST_ANGLE)
    k = (size / full) / scale
    cos, sin = torch.cos(angle) * k, torch.sin(angle) * k
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False)


@contextmanager
def leaky_relu_grad(module: nn.Module, slope: float) -> Iterator[None]:
    """While active, an nn.ReLU module's output also carries `slope` x its input's gradient (values unchanged)."""
    if not slope or not isinstance(module, nn.ReLU) or module.inplace:
        yield
        return
    with forward_hook(module, lambda m, inputs, out: out + slope * (inputs[0] - inputs[0].detach())):
        yield


def optimize_chunk(model: nn.Module, module: nn.Module, filters: Sequence[int], generators: Sequence[torch.Generator],
                   mode: str, steps: int, lr: float, size: int, device: torch.device, progress: Any = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise one image per filter together (one forward/backward per step); returns images and activations.

    `progress`: a tqdm-like bar, advanced by the chunk's size at every step.
    """
    if mode == "plain":
        param = torch.stack([torch.rand(3, size, size, generator=g) for g in generators])
    elif mode == "robust":
        param = torch.stack([torch.randn(3, size, size // 2 + 1, 2, generator=g) * ROBUST_INIT_SD
                             for g in generators])
        scale = _fourier_scale(size).to(device)[None, None]
    else:
        raise ValueError(f"unknown mode {mode!r}")
    param = param.to(device).requires_grad_()
    opt = torch.optim.Adam([param], lr=lr)
    for step in range(steps):
        if mode == "plain":
            x = param
        else:
            draws = torch.stack([torch.rand(4, generator=g) for g in generators])
            x = random_transform(fourier_image(param, scale), draws)
        opt.zero_grad(set_to_none=True)
        # Each image's loss involves only its own filter, so its gradient is independent of the chunk.
        with leaky_relu_grad(module, LEAK_SLOPE if mode == "robust" and step < LEAK_STEPS else 0.0):
            (-filter_means(model, module, x, filters).sum()).backward(inputs=[param])
        opt.step()
        if mode == "plain":
            with torch.no_grad():
                param.clamp_(0.0, 1.0)
        if progress is not None:
            progress.update(len(filters))
    with torch.no_grad():
        final = param.detach() if mode == "plain" else fourier_image(param.detach(), scale)
        return final.cpu(), filter_means(model, module, final, filters).float().cpu()


def visualize_filters(model: nn.Module, module: nn.Module, filters: Sequence[int],
                      generators: Sequence[torch.Generator], *, mode: str, steps: int, lr: float,
                      chunk: int = 1, size: int = 128, device: torch.device | str = "cpu", progress: Any = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Images (F x 3 x S x S in [0,1]) maximising each filter's mean activation, and the activations reached.

    `progress`: a tqdm-like bar, advanced once per filter and step.
    """
    device = torch.device(device)
    images, acts = [], []
    for i in range(0, len(filters), max(1, chunk)):
        j = i + max(1, chunk)
        x, a = optimize_chunk(model, module, filters[i:j], generators[i:j], mode, steps, lr, size, device, progress)
        images.append(x)
        acts.append(a)
    return torch.cat(images).numpy(), torch.cat(acts).numpy()


def noise_activations(model: nn.Module, module: nn.Module, filters: Sequence[int],
                      generators: Sequence[torch.Generator], size: int, device: torch.device) -> np.ndarray:
    """Each filter's mean activation on a uniform-noise image (the baseline the optimisation starts from)."""
    x = torch.stack([torch.rand(3, size, size, generator=g) for g in generators]).to(device)
    with torch.no_grad():
        return filter_means(model, module, x, filters).float().cpu().numpy()


def draw_filter_grid(images: np.ndarray, acts: np.ndarray, filters: Sequence[int], layer_label: str, title: str,
                     path: Path) -> Path:
    """A grid of optimised images, each titled with layer, filter id and the activation reached."""
    import draw

    n = len(filters)
    rows, cols = draw.item_rows(n, 1)
    side = draw.PAGE[0] / cols          # the grid spans the page width, so its text prints at the size drawn
    fig, axes = draw.figure(rows, cols, cell=(side, side + 0.28), title=title, snug=True)
    for k, ax in enumerate(axes.flat):
        if k < n:
            draw.show_image(ax, images[k], f"{layer_label} #{filters[k]}\nactivation {acts[k]:.3g}")
            ax.title.set_fontsize(7)
        else:
            ax.axis("off")
    return draw.save(fig, path)


def draw_activation_figure(images: torch.Tensor, maps: np.ndarray, captions: Sequence[str], filter_images: np.ndarray,
                           filters: Sequence[int], layer_label: str, title: str, path: Path) -> Path:
    """Images on top, each filter's activation maps below (one shared colour range per filter, colour bar)."""
    import draw

    n, nf = len(images), len(filters)
    per = 2 if nf > 1 else 1                  # two filters side by side, so the grid fits an A4 page
    rows = -(-nf // per)
    fig, grid = draw.figure(rows + 1, per * (n + 1) + per - 1, cell=(0.78, 0.95),
                            title=title + "\nleft of each row: the filter's optimised image (robust)")
    for a in grid[:, n + 1::n + 2].flat:      # a spacer column between the blocks, for the colour bars
        a.axis("off")
    axes = np.delete(grid, np.s_[n + 1::n + 2], axis=1)
    for b in range(per):
        axes[0, b * (n + 1)].axis("off")
        for i in range(n):
            draw.show_image(axes[0, b * (n + 1) + i + 1], images[i], captions[i].split("\n")[0])
    for r in range(rows * per):
        row = axes[1 + r // per, (r % per) * (n + 1):(r % per + 1) * (n + 1)]
        if r >= nf:
            for a in row:
                a.axis("off")
            continue
        draw.show_image(row[0], filter_images[r])
        row[0].set_ylabel(f"{layer_label} #{filters[r]}", fontsize=7)
        vrange = (0.0, float(maps[:, r].max()) or 1.0) if maps[:, r].min() >= 0 else \
            draw.display_range(maps[:, r], signed=True, pct=100)
        for i in range(n):
            draw.show_map(row[i + 1], maps[i, r], vrange=vrange, signed=maps[:, r].min() < 0,
                          title=f"mean {maps[i, r].mean():.2g}")
    for a in axes.flat:
        a.title.set_fontsize(6.5)
    h = fig.get_figheight()
    fig.subplots_adjust(left=0.03, right=0.95, top=1 - 0.95 / h, bottom=0.02, wspace=0.12, hspace=0.5)
    for r in range(nf):  # after the layout, so each bar takes its room from its own row
        row = axes[1 + r // per, (r % per) * (n + 1):(r % per + 1) * (n + 1)]
        draw.colorbar(fig, row[n].images[0], list(row[1:]), "")
    return draw.save(fig, path)


def _both_modes(ctx, layer: str, module: nn.Module, filters: list[int], bar: Any
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plain and robust images and activations of one layer's filters with the run's settings."""
    s = ctx.settings
    chunk, size = int(s["filter_chunk"]), ctx.input_size

    def gens() -> list[torch.Generator]:
        return [ctx.torch_generator("filters", layer, f) for f in filters]
    plain, plain_act = visualize_filters(ctx.infer_model(), module, filters, gens(), mode="plain",
                                         steps=s["filter_steps"], lr=s["filter_lr"], chunk=chunk, size=size,
                                         device=ctx.device, progress=bar)
    robust, robust_act = visualize_filters(ctx.infer_model(), module, filters, gens(), mode="robust",
                                           steps=s["robust_steps"], lr=s["robust_lr"], chunk=chunk, size=size,
                                           device=ctx.device, progress=bar)
    return plain, plain_act, robust, robust_act


def example_source(ctx) -> tuple["dataset.ImageSet", list[int]]:
    """Where dataset examples come from: the evaluation split of a Food-11 tree, else the selected images' listing;
    a deterministic subset of at most EXAMPLE_LIMIT images."""
    try:
        images = ctx.split(ctx.opts.eval_split) if dataset.is_food11(ctx.data) else ctx.imageset
    except UserError:
        images = ctx.imageset
    return images, example_subset(len(images))


def task_filters(ctx) -> FiltersResult:
    """Visualise filters of the chosen layer(s) in both modes and draw their activation maps on the images."""
    from tqdm import tqdm

    import draw

    s = ctx.settings
    names = list(ctx.opts.layer) or [default_layer(ctx.arch, ctx.net, ctx.layers_or_skip("filter visualization"))]
    layers = list(dict.fromkeys(resolve_layer(ctx.net, n) for n in names))
    chunk, size = int(s["filter_chunk"]), ctx.input_size
    captions = [draw.caption(f, ctx.class_names, None, int(p), float(pr[p]), int(t))
                for f, p, pr, t in zip(ctx.files, ctx.preds(), ctx.probs(), ctx.labels)]
    aliases = {v: k for k, v in block_aliases(ctx.net).items()}
    files: list[Path] = []
    ex_set, ex_idx = example_source(ctx)
    ex_images, _ = dataset.load_batch(ex_set, ex_idx, size, ctx.cv2_mode, ctx.resize)
    record = {"examples_split": ex_set.name, "examples_images": len(ex_idx), "chunk": chunk, "plain": {"steps": s["filter_steps"], "lr": s["filter_lr"]},
              "robust": {"steps": s["robust_steps"], "lr": s["robust_lr"], "pad": ROBUST_PAD, "jitter": ROBUST_JITTER,
                         "scale": ROBUST_SCALE, "rotate_deg": ROBUST_ANGLE}, "layers": {}}
    chosen = []
    for layer in layers:
        module = ctx.layer(layer)
        with torch.no_grad(), Tap(module, stop=True) as tap:
            channels = tap.run(ctx.model, ctx.images[:1].to(ctx.device)).shape[1]
        chosen.append((layer, module, parse_filters(ctx.opts.filters, channels, int(s["filter_count"]))))
    total = sum(len(f) for _, _, f in chosen) * (int(s["filter_steps"]) + int(s["robust_steps"]))
    with tqdm(total=total, desc="filters", unit="step", leave=False, disable=None) as bar:   # silent off a terminal
        results = [(layer, module, filters, *_both_modes(ctx, layer, module, filters, bar))
                   for layer, module, filters in chosen]
    for k, (layer, module, filters, plain, plain_act, robust, robust_act) in enumerate(results):
        label = layer + (f" ({aliases[layer]})" if layer in aliases else "")
        gens = [ctx.torch_generator("filters", layer, f) for f in filters]
        noise_act = noise_activations(ctx.model, module, filters, gens, size, ctx.device)
        maps = activation_maps(ctx.model, module, ctx.images, filters, ctx.device, s["batch_size"])
        suffix = "" if k == 0 else f"_{layer}"
        files.append(draw_filter_grid(
            plain, plain_act, filters, layer,
            f"Filter visualization of {label}, plain (course recipe):\nraw pixels from uniform noise, "
            f"Adam lr {s['filter_lr']:g}, {s['filter_steps']} steps, clamped to [0,1]",
            ctx.out / f"filter_visualization{suffix}.png"))
        files.append(draw_filter_grid(
            robust, robust_act, filters, layer,
            f"Filter visualization of {label}, robust (Lucid-style), {s['robust_steps']} Adam steps:\n"
            f"decorrelated-colour Fourier image, random pad/jitter/scale/rotate, lr {s['robust_lr']:g}",
            ctx.out / f"filter_visualization_robust{suffix}.png"))
        files.append(draw_activation_figure(
            ctx.images, maps, captions, robust, filters, layer,
            f"Activations of {label} filters on the selected images\n(each map titled with its mean; "
            f"one colour range per filter)",
            ctx.out / f"filter_activations{suffix}.png"))
        top, top_act = top_examples(ctx.model, module, ex_images, filters, min(EXAMPLE_K, len(ex_idx)), ctx.device,
                                    s["batch_size"])
        chosen = ex_images[torch.from_numpy(top.reshape(-1))]
        ex_maps = activation_maps(ctx.model, module, chosen, filters, ctx.device, s["batch_size"])
        ex_maps = np.stack([ex_maps[r * top.shape[1] + j, r] for r in range(len(filters)) for j in range(top.shape[1])])
        ex_maps = ex_maps.reshape(len(filters), top.shape[1], *ex_maps.shape[1:])
        ex_files = [[ex_set.files[ex_idx[int(i)]] for i in row] for row in top]
        titles = [[f"{f}\nmean {a:.3g}" for f, a in zip(fr, ar)] for fr, ar in zip(ex_files, top_act)]
        files.append(draw_examples_figure(
            robust, chosen, ex_maps, titles, filters, layer,
            f"Dataset examples of {label}: each filter's optimised image, then its {top.shape[1]} top-activating\n"
            f"images of the {ex_set.name} split ({len(ex_idx)} scanned), with the filter's activation map over each",
            ctx.out / f"filter_examples{suffix}.png"))
        record["layers"][layer] = {
            "examples": {str(f): [{"file": fn, "activation": float(a)} for fn, a in zip(fr, ar)]
                         for f, fr, ar in zip(filters, ex_files, top_act)},
            "alias": aliases.get(layer), "filters": filters, "plain_activation": plain_act.tolist(),
            "robust_activation": robust_act.tolist(), "noise_activation": noise_act.tolist(),
            "patterns": {"robust": filter_patterns(robust, filters), "plain": filter_patterns(plain, filters)},
            "image_mean_activation": maps.mean(axis=(2, 3)).mean(0).tolist()}
    return FiltersResult(files=files, precision=ctx.precision, **record)
