"""ROAD's noisy linear imputation (Rong et al., ICML 2022): removed pixels take the weighted mean of their 8
neighbours (direct 1/6, diagonal 1/12), solved jointly as a linear system, plus a little Gaussian noise.

`exact` solves the sparse system (scipy); `fast` approximates it in batched torch by a coarse-to-fine
(cascadic multigrid) fill: the known pixels are pooled into a pyramid, the coarsest level is relaxed to
convergence, and every finer level starts from the upsampled coarser solution and takes a few Jacobi sweeps
(3 at the finest, doubling per coarser level).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
NOISE = 0.01          # ROAD's default noise: std 0.01 of the pixel range ([0, 1] images)
SWEEPS = 3            # Jacobi sweeps at the finest level, doubling at every coarser one
COARSE_SWEEPS = 40    # sweeps at the coarsest level (a few pixels per side)


def weight(dy: int, dx: int) -> float:
    """ROAD's neighbour weight: 1/6 for a direct neighbour, 1/12 for a diagonal one."""
    return 1 / 12 if dy and dx else 1 / 6


def exact(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """C x H x W image with the removed (H x W bool) pixels replaced by the exact solution of ROAD's linear system."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    removed = np.asarray(removed, bool)
    ys, xs = np.nonzero(removed)
    if ys.size == 0:
        return image.astype(np.float64)
    index = -np.ones((h, w), np.int64)
    index[ys, xs] = np.arange(ys.size)
    rows, cols, vals = [np.arange(ys.size)], [np.arange(ys.size)], []
    diag = np.zeros(ys.size)
    rhs = np.zeros((ys.size, c))
    for dy, dx in OFFSETS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        k, ny, nx = np.nonzero(inside)[0], ny[inside], nx[inside]
        wt = weight(dy, dx)
        diag[k] += wt
        unknown = index[ny, nx] >= 0
        rows.append(k[unknown])
        cols.append(index[ny[unknown], nx[unknown]])
        vals.append(np.full(unknown.sum(), -wt))
        rhs[k[~unknown]] += wt * image[:, ny[~unknown], nx[~unknown]].T
    a = coo_matrix((np.concatenate([diag] + vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(ys.size, ys.size)).tocsc()
    out = image.astype(np.float64).copy()
    out[:, ys, xs] = np.asarray(spsolve(a, rhs)).reshape(ys.size, c).T
    return out


def neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """ROAD's weighted sum of the 8 neighbours (zero outside the image), times 12: [1 2 1] x [1 2 1] - 4 centre."""
    p = F.pad(x, (1, 1, 1, 1))
    h = (p[..., :, :-2] + p[..., :, 2:]).add_(p[..., :, 1:-1], alpha=2)
    return (h[..., :-2, :] + h[..., 2:, :]).add_(h[..., 1:-1, :], alpha=2).sub_(x, alpha=4)


def _sweep(x: torch.Tensor, known: torch.Tensor, n: int) -> torch.Tensor:
    """n Jacobi sweeps of ROAD's system: unknown pixels take the weighted mean of their neighbours."""
    inverse = 1 / neighbour_sum(torch.ones_like(x[:1, :1]))
    for _ in range(n):
        x = torch.where(known, x, neighbour_sum(x).mul_(inverse))
    return x


def fast(images: torch.Tensor, removed: torch.Tensor, sweeps: int = SWEEPS,
         coarse_sweeps: int = COARSE_SWEEPS) -> torch.Tensor:
    """B x C x H x W images with the removed (B x 1 x H x W bool) pixels filled by the cascadic multigrid fill."""
    x = images.float()
    known = ~removed.bool()
    levels = [(x * known, known.float())]
    while min(levels[-1][0].shape[-2:]) > 4:
        s, k = levels[-1]
        levels.append((F.avg_pool2d(s, 2, ceil_mode=True), F.avg_pool2d(k, 2, ceil_mode=True)))
    s, k = levels[-1]
    known_c = k > 0
    mean = (s.sum((2, 3), keepdim=True) / k.sum((2, 3), keepdim=True).clamp_min(1e-12))
    out = torch.where(known_c, s / k.clamp_min(1e-12), mean)
    out = _sweep(out, known_c, coarse_sweeps)
    for level, (s, k) in reversed(list(enumerate(levels[:-1]))):
        known_l = k > 0
        up = F.interpolate(out, size=s.shape[-2:], mode="bilinear", align_corners=False)
        out = _sweep(torch.where(known_l, s / k.clamp_min(1e-12), up), known_l, sweeps * 2 ** level)
    return torch.where(known, x, out)


def impute(images: torch.Tensor, removed: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """ROAD's noisy linear imputation (fast fill): `noise` (same shape as images, already scaled) is added to the
    removed pixels."""
    out = fast(images, removed)
    return out if noise is None else torch.where(removed.bool(), out + noise, out)
