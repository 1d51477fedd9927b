"""Occlusion sensitivity (Zeiler & Fergus 2014), task `occlusion`.

A grey (0.5) square of occlusion_patch pixels slides over the image with occlusion_stride (the last row and
column of positions are moved flush with the border so every pixel is covered); every occluded copy is
classified (in batches of batch_size, inference mode) and the drop of the target class probability is
averaged over the patches covering each pixel. Positive = the region is evidence for the class.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from errors import ExplainInputError
from model import device_of
from outputs import save_maps
from records import OcclusionResult


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis, the last one flush with the border."""
    last = size - patch
    starts = list(range(0, last + 1, stride))
    return starts if starts[-1] == last else starts + [last]


def coverage(size: int, patch: int, starts: list[int]) -> torch.Tensor:
    """Positions x pixels 0/1 matrix: which pixels each patch start covers along one axis."""
    pix = torch.arange(size)
    s = torch.as_tensor(starts)[:, None]
    return ((pix >= s) & (pix < s + patch)).float()


def occlusion(model: nn.Module, images: torch.Tensor, targets: np.ndarray, *, patch: int, stride: int,
              value: float, batch_size: int = 8, progress=None) -> np.ndarray:
    """Per-pixel mean drop of the target class probability under a sliding grey patch: N x H x W."""
    if patch < 1 or stride < 1:
        raise ExplainInputError(f"occlusion patch ({patch}) and stride ({stride}) must be at least 1")
    device = device_of(model)
    h, w = images.shape[-2:]
    ph, pw = min(patch, h), min(patch, w)
    rows = coverage(h, ph, patch_starts(h, ph, stride)).to(device)    # ny x H
    cols = coverage(w, pw, patch_starts(w, pw, stride)).to(device)    # nx x W
    ny, nx = len(rows), len(cols)
    iy, ix = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
    iy, ix = iy.flatten().to(device), ix.flatten().to(device)
    count = rows.T @ torch.ones(ny, nx, device=device) @ cols          # H x W patches covering each pixel
    if progress is not None:
        progress.reset(total=len(images) * ny * nx)
    maps = []
    with torch.inference_mode():
        for img, t in zip(images.to(device), targets):
            p0 = torch.softmax(model(img[None]).float(), 1)[0, int(t)]
            drops = []
            for k in range(0, ny * nx, batch_size):
                m = (rows[iy[k:k + batch_size]][:, :, None] * cols[ix[k:k + batch_size]][:, None, :])[:, None]
                x = img[None] * (1 - m) + value * m
                drops.append(p0 - torch.softmax(model(x).float(), 1)[:, int(t)])
                if progress is not None:
                    progress.update(len(x))
            d = torch.cat(drops).view(ny, nx)
            maps.append((rows.T @ d @ cols / count.clamp_min(1)).cpu())   # stride > patch: uncovered pixels 0
    return torch.stack(maps).numpy().astype(np.float32)


def task_occlusion(ctx) -> OcclusionResult:
    """Occlusion maps of the selected images: arrays/occlusion.npz and occlusion.png."""
    import draw

    att = ctx.attribute("occlusion")
    maps, targets, preds, probs = att.maps, att.targets, ctx.preds(), ctx.probs()
    patch, stride = att.options["patch"], att.options["stride"]
    files = [save_maps(ctx.out, "occlusion", maps, ctx.files, targets, preds)]
    peak = maps.reshape(len(maps), -1).max(1)
    caps = [draw.caption(f, ctx.class_names, int(t), int(p), float(pr[p]), int(lb))
            for f, t, p, pr, lb in zip(ctx.files, targets, preds, probs, ctx.labels)]
    notes = [f"p({ctx.class_names[t]}) = {pr[t]:.3g}, max drop {v:.2g}" for t, pr, v in zip(targets, probs, peak)]
    title = (f"Occlusion sensitivity (Zeiler & Fergus 2014): grey {patch}-px patch, "
             f"stride {stride}\nmap = drop of the target class probability when the region "
             f"is hidden\n(red: evidence for the class, blue: against)")
    files.append(draw.attribution_grid(ctx.images, maps, caps, title, ctx.out / "occlusion.png", signed=True,
                                       unit="drop of p(target)", per_row_note=notes))
    return OcclusionResult(files=files, patch=int(patch), stride=int(stride), precision=ctx.precision,
                           max_drop={f: float(v) for f, v in zip(ctx.files, peak)})
