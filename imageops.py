"""Image operations several modules share: Gaussian blur, the blurred copies (IG baseline, insertion start), and
resizing maps to the image size."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur of a batch, reflect-padded (radius default: ceil(2 sigma))."""
    r = max(1, int(np.ceil(2 * sigma))) if radius is None else radius
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(device=x.device, dtype=x.dtype)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def blurred(images: torch.Tensor, sigma_frac: float = 1 / 16) -> torch.Tensor:
    """Gaussian-blurred copies (sigma = sigma_frac x image side, reflect padding): the 'blurred' IG baseline."""
    x = images.detach().float()
    sigma = max(sigma_frac * x.shape[-1], 0.5)
    return gaussian_blur(x, sigma, min(int(3 * sigma), x.shape[-1] - 1, x.shape[-2] - 1))


def fit_maps(maps: np.ndarray, height: int, width: int | None = None) -> np.ndarray:
    """Maps N x h x w resized (bilinear) to N x height x width float32, NaN/inf replaced by 0."""
    size = (height, height if width is None else width)
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if maps.shape[1:] == size:
        return maps
    t = F.interpolate(torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False)
    return t[:, 0].numpy()
