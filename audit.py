"""Whole-split audit: where does the model look across a split, and which confident predictions rest on the wrong
evidence?

One pure per-batch function (`audit_batch`: images + labels -> per-image rows) holds all the model work, so the same
code runs in-process (`--engine local`) or in the actors of a Ray Data pipeline (`--engine ray`). Per image:
- the prediction, its softmax confidence, and whether it is correct (when the label is known);
- a low-resolution Grad-CAM map of the predicted class (grid x grid cells, bilinear from the layer's native size);
  one fp32 forward pass whose backward runs only through the layers after the Grad-CAM layer;
- its deletion AUC at a cheap resolution: grid cells deleted (set to 0) in the order of the map, highest first,
  in `steps` equal steps; the curve is the predicted class's probability, its trapezoid area the AUC;
- the share of its mass in the border band (the cells within `border` x the side of an edge);
- where the data has masks, the share of its mass on the object (`masks/<split>/`) and on the planted mark
  (`masks_mark/<split>/`), with each cell weighted by the fraction of it the mask covers.
Every model call runs at exactly the batch size (the last chunk is padded with black images), which makes each
image's numbers independent of which images share its batch: both engines write the same bytes.

Over the whole split (`summarise`, pure numpy, after the rows are gathered in listing order): the mean map of each
predicted class, a seeded k-means of each class's maps into a few attention patterns, and the suspicion score
(defined in `suspicion` and in the README). The score reads maps and predictions only; masks only grade it.
"""
from __future__ import annotations

import os
import socket
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import dataset
import metrics
import saliency
import seeds
import where
from errors import Skipped, UserError
from model import device_of
from records import AuditResult

COLUMNS = ["index", "file", "label", "pred", "confidence", "correct", "deletion_auc", "border_mass", "spot_mass",
           "typical_mass", "cluster", "suspicion", "gradcam_rank", "ig_spot_mass", "spot_drop", "rescore", "suspicion_rank",
           "object_mass", "mark_mass", "has_mark"]
RAY_PROBE_TIMEOUT_S = 5.0   # joining --ray-address: the TCP probe, then at most RAY_JOIN_RETRIES ~1 s GCS retries,
RAY_JOIN_RETRIES = 6        # so a run that cannot join ends within 30 s, start-up included


# ---------------------------------------------------------------- the per-batch function

@dataclass
class AuditRows:
    """Per-image results of one batch (or of a whole split, concatenated in listing order)."""

    pred: np.ndarray            # int64 predicted class
    confidence: np.ndarray      # float64 softmax probability of the prediction
    label: np.ndarray           # int64, -1 where unknown
    maps: np.ndarray            # float32 N x grid x grid Grad-CAM of the predicted class (>= 0, raw units)
    deletion_auc: np.ndarray    # float64
    border_mass: np.ndarray     # float64 share of map mass in the border band
    object_mass: np.ndarray     # float64 share on the object mask (NaN without masks)
    mark_mass: np.ndarray       # float64 share on the mark mask (NaN without mark masks)
    has_mark: np.ndarray        # int64 1 / 0, -1 without mark masks

    @property
    def correct(self) -> np.ndarray:
        """1 / 0 where the label is known, -1 elsewhere."""
        return np.where(self.label >= 0, (self.pred == self.label).astype(np.int64), -1)

    def columns(self) -> dict[str, np.ndarray]:
        """The fields as a dict of arrays (Ray Data's batch format)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concat(cls, parts: list[dict[str, np.ndarray]] | list["AuditRows"]) -> "AuditRows":
        """Rows of several batches, in the given order."""
        cols = [p.columns() if isinstance(p, AuditRows) else p for p in parts]
        return cls(**{f.name: np.concatenate([np.asarray(c[f.name]) for c in cols]) for f in fields(cls)})

    def take(self, order: np.ndarray) -> "AuditRows":
        """The rows in another order."""
        return AuditRows(**{f.name: getattr(self, f.name)[order] for f in fields(self)})


def _padded(x: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, int]]:
    """Chunks of exactly `size` rows (the last padded with zeros) and how many rows of each are real."""
    for i in range(0, len(x), size):
        chunk = x[i:i + size]
        real = len(chunk)
        if real < size:
            chunk = torch.cat([chunk, chunk.new_zeros((size - real, *chunk.shape[1:]))])
        yield chunk, real


_device = device_of


def as_float(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A uint8 (0..255) or float ([0,1]) N x 3 x H x W batch as float32 in [0,1]."""
    x = torch.as_tensor(np.asarray(images)) if isinstance(images, np.ndarray) else images
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def cam_pass(model: nn.Module, layer: nn.Module, x: torch.Tensor, batch_size: int, grid: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (N x C, fp32) and Grad-CAM maps of the predicted class (N x grid x grid)."""
    probs, maps = [], []
    for chunk, real in _padded(x, batch_size):
        cam, logits = saliency.gradcam_batch(model, chunk.contiguous(memory_format=torch.channels_last), layer)
        smaller = cam.shape[-2] > grid or cam.shape[-1] > grid
        cam = F.interpolate(cam[:, None], size=(grid, grid), mode="bilinear", align_corners=False, antialias=smaller)
        probs.append(torch.softmax(logits, 1)[:real].cpu())
        maps.append(cam[:real, 0].cpu())
    return torch.cat(probs).numpy(), torch.cat(maps).numpy().astype(np.float32)


def tie_order(grid: int, seed: int) -> np.ndarray:
    """The seeded permutation of grid cells that breaks ties in the deletion order (0 = first among equals)."""
    return seeds.rng(seed, "audit", "ties").permutation(grid * grid)


def black_probs(model: nn.Module, size: int, channels: int, batch_size: int) -> np.ndarray:
    """Softmax of an all-black image (the last point of every deletion curve), at the run's batch size."""
    x = torch.zeros((1, channels, size, size))
    with torch.inference_mode():
        chunk, _ = next(_padded(x, batch_size))
        out = model(chunk.to(_device(model)).contiguous(memory_format=torch.channels_last)).float()
    return torch.softmax(out, 1)[0].cpu().numpy().astype(np.float64)


def deletion_auc(model: nn.Module, x: torch.Tensor, maps: np.ndarray, targets: np.ndarray, p0: np.ndarray,
                 floor: np.ndarray, steps: int, ties: np.ndarray, batch_size: int) -> np.ndarray:
    """Deletion AUC over grid cells ranked by the map (ties by `ties`): `steps` equal steps, deleted pixels = 0.

    `p0` holds the targets' probabilities on the intact images and `floor` the softmax of a black image (the
    curve's last point), so only the steps - 1 partial deletions run through the model.
    """
    n, g = len(maps), maps.shape[-1]
    cells = g * g
    counts = (np.arange(steps + 1) * cells) // steps
    flat = -np.asarray(maps, dtype=np.float64).reshape(n, cells)
    order = np.lexsort((np.broadcast_to(ties, flat.shape), flat), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(cells)[None].repeat(n, 0), axis=-1)
    curve = np.empty((n, steps + 1), dtype=np.float64)
    curve[:, 0] = p0
    curve[:, -1] = floor[targets]
    curve[:, 1:steps] = metrics.perturbed_probs(model, x, ranks.reshape(n, g, g), targets, counts[1:steps],
                                                torch.zeros_like(x), batch_size=batch_size, pad=True)
    return metrics.auc(counts / cells, curve)


def mass_share(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per image, the share of map mass on cells weighted by `weights` (N x g x g or g x g in [0,1]); 0 if no mass."""
    m = np.asarray(maps, dtype=np.float64)
    total = m.sum((1, 2))
    inside = (m * weights).sum((1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)


def cell_fractions(masks: np.ndarray, grid: int) -> np.ndarray:
    """N x H x W bool masks as the covered fraction of each of grid x grid cells (area average)."""
    t = torch.from_numpy(np.asarray(masks, dtype=np.float32))[:, None]
    return F.adaptive_avg_pool2d(t, grid)[:, 0].double().numpy()


def audit_batch(model: nn.Module, layer: nn.Module, images: torch.Tensor | np.ndarray, labels: np.ndarray, *,
                batch_size: int, grid: int, steps: int, border: float, ties: np.ndarray, floor: np.ndarray,
                infer_model: nn.Module | None = None, masks: np.ndarray | None = None,
                mark_masks: np.ndarray | None = None) -> AuditRows:
    """Per-image audit rows of one batch: prediction, confidence, low-res Grad-CAM, deletion AUC, border mass, and
    (where masks are given, N x H x W bool) mass on the object and on the mark.

    `layer` belongs to `model` (the fp32 [0,1]-RGB model); `infer_model` (default `model`) runs the forward-only
    deletion passes, e.g. under bf16 autocast. `ties` = tie_order(grid, seed), `floor` = black_probs(...).
    """
    x = as_float(images)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if x.dim() != 4 or len(x) != len(labels):
        raise UserError(f"audit_batch needs N x C x H x W images and N labels, got {tuple(x.shape)} and {len(labels)}")
    probs, maps = cam_pass(model, layer, x, batch_size, grid)
    pred = probs.argmax(1).astype(np.int64)
    conf = probs[np.arange(len(pred)), pred].astype(np.float64)
    dauc = deletion_auc(infer_model or model, x, maps, pred, conf, floor, steps, ties, batch_size)
    nan = np.full(len(pred), np.nan)
    obj = mass_share(maps, cell_fractions(masks, grid)) if masks is not None else nan
    if mark_masks is not None:
        mark = mass_share(maps, cell_fractions(mark_masks, grid))
        has = np.asarray(mark_masks).reshape(len(pred), -1).any(1).astype(np.int64)
    else:
        mark, has = nan.copy(), np.full(len(pred), -1, dtype=np.int64)
    return AuditRows(pred=pred, confidence=conf, label=labels, maps=maps, deletion_auc=dauc,
                     border_mass=mass_share(maps, where.border_mask(grid, border)), object_mass=obj, mark_mass=mark,
                     has_mark=has)


# ---------------------------------------------------------------- over the whole split

def normalised(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its mass (sum 1); a map without mass stays 0."""
    m = np.asarray(maps, dtype=np.float64)
    total = m.sum((1, 2), keepdims=True)
    return np.where(total > 0, m / np.where(total > 0, total, 1.0), 0.0)


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means (k-means++ start, Lloyd steps until stable): labels (0 = largest cluster) and centres."""
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, x.shape[1]))
    centres = [x[int(rng.integers(n))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    while len(centres) < min(k, n) and d2.sum() > 0:
        c = x[int(rng.choice(n, p=d2 / d2.sum()))]
        centres.append(c)
        d2 = np.minimum(d2, ((x - c) ** 2).sum(1))
    cen = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        labels = ((x[:, None, :] - cen[None]) ** 2).sum(-1).argmin(1)
        new = np.stack([x[labels == j].mean(0) if (labels == j).any() else cen[j] for j in range(len(cen))])
        if np.array_equal(new, cen):
            break
        cen = new
    sizes = np.bincount(labels, minlength=len(cen))
    first = np.array([np.flatnonzero(labels == j)[0] if sizes[j] else n for j in range(len(cen))])
    rank = np.lexsort((first, -sizes))              # largest first, ties by first member
    relabel = np.empty(len(cen), dtype=np.int64)
    relabel[rank] = np.arange(len(cen))
    return relabel[labels], cen[rank]


@dataclass
class AuditSummary:
    """Whole-split results computed from the gathered rows."""

    class_means: np.ndarray     # C x g x g mean normalised map of the images predicted as each class (0 if none)
    class_counts: np.ndarray    # C images predicted as each class
    cluster: np.ndarray         # N attention pattern of each image within its predicted class (0 = largest)
    cluster_sizes: list[list[int]]   # per class, the size of each pattern
    spot_mass: np.ndarray       # N (see suspicion)
    typical_mass: np.ndarray    # N
    suspicion: np.ndarray       # N
    rank: np.ndarray            # N 1 = most suspicious


def class_means(maps: np.ndarray, pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean normalised map per predicted class (zeros where a class is never predicted) and the counts."""
    norm = normalised(maps)
    counts = np.bincount(pred, minlength=num_classes)
    means = np.zeros((num_classes, *norm.shape[1:]))
    for c in range(num_classes):
        if counts[c]:
            means[c] = norm[pred == c].mean(0)
    return means, counts


def spot_mass(maps: np.ndarray, window: int) -> np.ndarray:
    """Per image, the largest share of its mass inside one window x window block of cells."""
    t = torch.from_numpy(normalised(maps))[:, None]
    return (F.avg_pool2d(t, window, stride=1) * window * window).amax((1, 2, 3)).numpy()


def typical_region(mean: np.ndarray, share: float) -> np.ndarray:
    """Bool g x g: the fewest cells of a mean map that hold `share` of its mass (ties by cell order)."""
    flat = np.asarray(mean, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")
    cum = np.cumsum(flat[order])
    region = np.zeros(flat.size, dtype=bool)
    if cum[-1] > 0:
        region[order[:int(np.searchsorted(cum, share * cum[-1])) + 1]] = True
    return region.reshape(mean.shape)


def suspicion(rows: AuditRows, window: int, typical_share: float = 0.5
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Suspicion score from maps and predictions only: (spot_mass, typical_mass, score).

    typical region = the fewest cells of the split's per-cell median normalised map that hold `typical_share` of
    its mass (where the model usually looks, whatever it predicts; the median, so that a spot used by a minority of
    the images, such as a shortcut, does not become typical);
    typical_mass = the image's mass share in that region;
    spot_mass = its largest mass share inside one window x window block of cells;
    score = confidence x spot_mass x (1 - typical_mass): a confident prediction whose evidence sits in one small
    spot away from where the model usually looks.
    """
    norm = normalised(rows.maps)
    typical = (norm * typical_region(np.median(norm, 0), typical_share)).sum((1, 2)) if len(norm) else np.zeros(0)
    spot = spot_mass(rows.maps, window)
    return spot, typical, rows.confidence * spot * (1.0 - typical)


def summarise(rows: AuditRows, num_classes: int, clusters: int, seed: int, window: int) -> AuditSummary:
    """Class means, seeded attention patterns per class, and the suspicion ranking of a whole split's rows."""
    means, counts = class_means(rows.maps, rows.pred, num_classes)
    norm = normalised(rows.maps).reshape(len(rows.pred), -1)
    cluster = np.zeros(len(rows.pred), dtype=np.int64)
    sizes: list[list[int]] = []
    for c in range(num_classes):
        idx = np.flatnonzero(rows.pred == c)
        lab, _ = kmeans(norm[idx], clusters, seeds.rng(seed, "audit", "kmeans", c))
        cluster[idx] = lab
        sizes.append(np.bincount(lab, minlength=min(clusters, len(idx))).tolist() if len(idx) else [])
    spot, typical, score = suspicion(rows, window)
    order = np.lexsort((np.arange(len(score)), -score))
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(1, len(score) + 1)
    return AuditSummary(means, counts, cluster, sizes, spot, typical, score, rank)


# ---------------------------------------------------------------- the second look at the top candidates

@dataclass
class Rescore:
    """The second look at the Grad-CAM ranking's top candidates (listing indices), with its cost."""

    index: np.ndarray           # int64 K listing indices of the candidates, in Grad-CAM rank order
    ig_spot: np.ndarray         # float64 K largest share of the positive IG map in one spot block
    spot_drop: np.ndarray       # float64 K fall of the predicted probability when that block is blurred (>= 0)
    score: np.ndarray           # float64 K confidence x ig_spot x spot_drop
    seconds: float


def block_box(r: int, c: int, window: int, grid: int, height: int, width: int) -> tuple[slice, slice]:
    """The pixel rows and columns of the window x window block of grid cells whose top-left cell is (r, c)."""
    return (slice(round(r * height / grid), round((r + window) * height / grid)),
            slice(round(c * width / grid), round((c + window) * width / grid)))


def ig_spots(model: nn.Module, x: torch.Tensor, pred: np.ndarray, *, steps: int, window: int, grid: int,
             batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """IG of the predicted class (blurred baseline), positive part pooled to grid x grid cells: the largest share in
    one window x window block, and that block's top-left cell (K x 2)."""
    maps, _ = saliency.integrated_gradients(model, x, pred, steps=steps, baseline="blurred", batch_size=batch_size)
    cells = F.adaptive_avg_pool2d(torch.from_numpy(np.clip(maps, 0, None)).float()[:, None], grid)[:, 0]
    pooled = F.avg_pool2d(torch.from_numpy(normalised(cells.numpy()))[:, None], window, stride=1)[:, 0] * window ** 2
    flat = pooled.reshape(len(pooled), -1)
    best = flat.argmax(1).numpy()
    side = pooled.shape[-1]
    return flat.amax(1).numpy().astype(np.float64), np.stack([best // side, best % side], 1)


def spot_drop(model: nn.Module, x: torch.Tensor, pred: np.ndarray, conf: np.ndarray, corners: np.ndarray, *,
              window: int, grid: int, batch_size: int) -> np.ndarray:
    """Fall of the predicted probability (clipped at 0) when each image's block is replaced by its blurred copy."""
    import imageops

    cut = x.clone()
    soft = imageops.blurred(x)
    for k, (r, c) in enumerate(corners):
        rows, cols = block_box(int(r), int(c), window, grid, x.shape[-2], x.shape[-1])
        cut[k, :, rows, cols] = soft[k, :, rows, cols]
    probs = []
    with torch.inference_mode():
        for part, n in _padded(cut, batch_size):
            probs.append(torch.softmax(model(part.to(device_of(model))).float(), 1)[:n].cpu())
    p = torch.cat(probs).double().numpy()[np.arange(len(pred)), pred]
    return np.clip(np.asarray(conf, dtype=np.float64) - p, 0.0, None)


def rescore(model: nn.Module, x: torch.Tensor, pred: np.ndarray, conf: np.ndarray, index: np.ndarray, *,
            steps: int, window: int, grid: int, batch_size: int) -> Rescore:
    """IG spot and spot drop of the candidates x (fp32 [0,1] RGB, at listing indices `index`)."""
    t0 = time.perf_counter()
    spot, corners = ig_spots(model, x, pred, steps=steps, window=window, grid=grid, batch_size=batch_size)
    drop = spot_drop(model, x, pred, conf, corners, window=window, grid=grid, batch_size=batch_size)
    return Rescore(np.asarray(index, dtype=np.int64), spot, drop, np.asarray(conf, dtype=np.float64) * spot * drop,
                   time.perf_counter() - t0)


def reranked(rank: np.ndarray, second: Rescore) -> np.ndarray:
    """Ranks after the second look: the candidates first, by their new score (ties by Grad-CAM rank), then every
    other image in its Grad-CAM order."""
    order = list(second.index[np.lexsort((rank[second.index], -second.score))])
    chosen = set(order)
    order += [int(i) for i in np.argsort(rank, kind="stable") if int(i) not in chosen]
    new = np.empty(len(rank), dtype=np.int64)
    new[np.asarray(order, dtype=np.int64)] = np.arange(1, len(rank) + 1)
    return new


# ---------------------------------------------------------------- reading a split

def load_masks(cfg: AuditConfig, images: dataset.ImageSet, indices: np.ndarray
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Object masks (None unless every image has one) and mark masks (an image without a mark file: empty; None
    without masks_mark/<split>/), brought to the input size with the run's resize like the images."""
    idx = [int(i) for i in indices]
    return (dataset.load_masks(images, idx, cfg.size, cfg.resize),
            where.mark_masks(cfg.data, images, idx, cfg.size, cfg.resize))


@dataclass
class AuditConfig:
    """What an engine needs besides the model: the split, the batching and the audit settings."""

    data: str
    split: str
    size: int
    cv2_mode: bool
    resize: dataset.Resize
    batch_size: int
    grid: int
    steps: int
    border: float
    seed: int
    layer: str
    precision: str
    threads: int
    workers: int


def _models(model: nn.Module, cfg: AuditConfig, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The fp32 model and the one for forward-only passes (bf16 autocast under --precision bf16)."""
    from model import Autocast

    return model, (model if cfg.precision == "fp32" else Autocast(model, device))


class Auditor:
    """The per-batch audit of one model (in the driver for --engine local, one per Ray actor for --engine ray)."""

    def __init__(self, model: nn.Module, cfg: AuditConfig, num_classes: int):
        from model import find_module

        self.cfg = cfg
        self.device = _device(model)
        self.model, self.infer = _models(model, cfg, self.device)
        self.layer = find_module(model.net, cfg.layer)
        self.images = dataset.open_split(cfg.data, cfg.split)
        self.ties = tie_order(cfg.grid, cfg.seed)
        self.floor = black_probs(self.infer, cfg.size, 3, cfg.batch_size)
        self.num_classes = num_classes

    def rows(self, images: torch.Tensor, indices: np.ndarray) -> AuditRows:
        """Audit rows of one batch of decoded images (uint8) at listing indices."""
        c = self.cfg
        masks, marks = load_masks(c, self.images, indices)
        labels = np.array([-1 if self.images.labels[int(i)] is None else self.images.labels[int(i)] for i in indices])
        return audit_batch(self.model, self.layer, images, labels, batch_size=c.batch_size, grid=c.grid,
                           steps=c.steps, border=c.border, ties=self.ties, floor=self.floor, infer_model=self.infer,
                           masks=masks, mark_masks=marks)


def run_local(model: nn.Module, cfg: AuditConfig, num_classes: int) -> AuditRows:
    """The audit in this process: the split loader's batches (decoded in worker processes), in listing order."""
    from tqdm import tqdm

    auditor = Auditor(model, cfg, num_classes)
    loader = dataset.split_loader(auditor.images, cfg.size, cfg.batch_size, cfg.cv2_mode, cfg.workers, cfg.resize)
    parts = []
    for x, idx in tqdm(dataset.batches(loader), total=len(loader), desc=f"audit {cfg.split}", unit="batch",
                       leave=False, disable=None):
        parts.append(auditor.rows(x, idx.numpy()))
    return AuditRows.concat(parts)


class RayAuditActor:
    """A Ray Data actor: one model, the same per-batch function and torch thread count as the local engine."""

    def __init__(self, model_ref: list, cfg: AuditConfig, num_classes: int, gpu: bool):
        import ray

        torch.set_num_threads(cfg.threads)
        model = ray.get(model_ref[0])
        device = torch.device("cuda" if gpu else "cpu")
        model = model.to(device).eval().to(memory_format=torch.channels_last)
        self.auditor = Auditor(model, cfg, num_classes)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        idx = np.asarray(batch["index"], dtype=np.int64)
        x = torch.stack([dataset.decode_uint8(Path(p), self.auditor.cfg.size, self.auditor.cfg.cv2_mode,
                                                 self.auditor.cfg.resize)
                         for p in batch["path"]])
        return {"index": idx, **self.auditor.rows(x, idx).columns()}


def probe_address(address: str, timeout: float = RAY_PROBE_TIMEOUT_S) -> None:
    """Open a TCP connection to a Ray address (host:port, ray://host:port; 'auto' is not probed) or raise a one-line
    UserError."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        host, port = target, "10001" if address.startswith("ray://") else "6379"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at --ray-address {address}: "
                        f"{exc.strerror or type(exc).__name__ if not isinstance(exc, socket.timeout) else 'timed out'}"
                        ) from None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (C++ libraries write there directly)."""
    import sys

    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def ray_init(address: str | None) -> None:
    """Join the cluster at `address` (TCP-probed first), or start a local Ray for this run."""
    import logging

    import ray

    repo = str(Path(__file__).resolve().parent)
    if address:
        probe_address(address)
        env = {"working_dir": repo, "excludes": [".cache/", ".venv", ".git/", "output/", "**/__pycache__/"]}
        try:
            with _quiet_stderr():   # the core library prints a warning line per failed retry
                ray.init(address=address, runtime_env=env, logging_level=logging.ERROR, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot join the Ray cluster at --ray-address {address}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    else:
        ray.init(num_cpus=max(2, os.cpu_count() or 2), include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": repo}})


def _user_error(exc: BaseException) -> UserError | None:
    """A UserError raised inside a Ray worker (Ray wraps it), as a fresh one-line UserError, else None."""
    seen = exc
    while seen is not None:
        if isinstance(seen, UserError):
            lines = [ln for ln in str(seen).strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else type(seen).__name__
            return UserError(last.split("UserError: ", 1)[-1])
        seen = seen.__cause__ or seen.__context__
    return None


def _no_restarts() -> dict[str, Any]:
    """Remote args of the audit actors: no restarts."""
    return {"max_restarts": 0}


def run_ray(model: nn.Module, cfg: AuditConfig, num_classes: int, address: str | None, device: torch.device
            ) -> AuditRows:
    """The audit through Ray Data: the file list as a dataset, map_batches over a pool of actors (one model each,
    one GPU each where the run uses CUDA), the rows gathered in listing order."""
    import copy

    import logging

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if address:   # read when ray is imported: ~1 s per GCS retry, 20 by default
        os.environ.setdefault("RAY_NUM_REDIS_GET_RETRIES", str(RAY_JOIN_RETRIES))
    import ray

    images = dataset.open_split(cfg.data, cfg.split)
    ray_init(address)
    logging.disable(logging.WARNING)   # Ray Data re-configures its loggers on every execution: mute its info lines
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        gpu = device.type == "cuda"
        res = ray.cluster_resources()
        cpus = max(1, int(res.get("CPU", 1)))
        actors = max(1, int(res.get("GPU", 0))) if gpu else max(1, cpus // max(1, cfg.threads))
        ref = ray.put(copy.deepcopy(model).cpu())
        items = [{"index": i, "path": str(p)} for i, p in enumerate(images.paths)]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * actors))
        with warnings.catch_warnings():   # max_restarts=0 (a failed actor fails the run; restarts would warn that
            warnings.filterwarnings("ignore", message=".*ray_remote_args_fn.*")   # their arguments may be gone)
            out = ds.map_batches(RayAuditActor, fn_constructor_kwargs={"model_ref": [ref], "cfg": cfg,
                                                                        "num_classes": num_classes, "gpu": gpu},
                                 batch_size=cfg.batch_size, batch_format="numpy",
                                 compute=ray.data.ActorPoolStrategy(size=actors), ray_remote_args_fn=_no_restarts,
                                 num_gpus=1 if gpu else 0, num_cpus=1 if gpu else min(cfg.threads, cpus))
        try:
            parts = list(out.iter_batches(batch_size=None, batch_format="numpy"))
        except Exception as exc:  # noqa: BLE001 - a bad image in a worker is the user's one-line error again
            err = _user_error(exc)
            if err is not None:
                raise err from None
            raise
    finally:
        logging.disable(logging.NOTSET)
        ray.shutdown()
    index = np.concatenate([p["index"] for p in parts])
    rows = AuditRows.concat(parts).take(np.argsort(index, kind="stable"))
    if not np.array_equal(np.sort(index), np.arange(len(images))):
        raise RuntimeError(f"the Ray pipeline returned {len(index)} rows for {len(images)} images")
    return rows


# ---------------------------------------------------------------- the task

def _g6(x: float) -> str:
    """A float to 6 significant digits ('' for NaN)."""
    return "" if not np.isfinite(x) else f"{float(x):.6g}"


def csv_rows(files: list[str], rows: AuditRows, summ: AuditSummary, second: Rescore, final: np.ndarray
             ) -> list[list[Any]]:
    """audit.csv's rows (COLUMNS), one per image in listing order; the second look's columns are empty outside
    its candidates."""
    out = []
    correct = rows.correct
    look = {int(i): k for k, i in enumerate(second.index)}
    for i, f in enumerate(files):
        k = look.get(i)
        extra = ["", "", ""] if k is None else [_g6(second.ig_spot[k]), _g6(second.spot_drop[k]), _g6(second.score[k])]
        out.append([i, f, int(rows.label[i]), int(rows.pred[i]), _g6(rows.confidence[i]),
                    "" if correct[i] < 0 else int(correct[i]), _g6(rows.deletion_auc[i]), _g6(rows.border_mass[i]),
                    _g6(summ.spot_mass[i]), _g6(summ.typical_mass[i]), int(summ.cluster[i]), _g6(summ.suspicion[i]),
                    int(summ.rank[i]), *extra, int(final[i]), _g6(rows.object_mass[i]), _g6(rows.mark_mass[i]),
                    "" if rows.has_mark[i] < 0 else int(rows.has_mark[i])])
    return out


def config(ctx, split: str) -> AuditConfig:
    """The audit's settings for this run."""

    s = ctx.settings
    return AuditConfig(data=str(ctx.data), split=split, size=ctx.input_size, cv2_mode=ctx.cv2_mode,
                       resize=ctx.resize, batch_size=int(s["eval_batch_size"]), grid=int(s["audit_grid"]), steps=int(s["audit_steps"]),
                       border=float(s["audit_border"]), seed=ctx.seed, layer=ctx.gradcam_layer(),
                       precision=ctx.precision, threads=torch.get_num_threads(), workers=int(s["loader_workers"]))


def second_look(ctx, split: str, rows: AuditRows, rank: np.ndarray) -> Rescore:
    """Rescore the Grad-CAM ranking's top `audit_rescore` images with IG (in this process, whatever the engine)."""
    s = ctx.settings
    cand = np.argsort(rank, kind="stable")[:min(int(s["audit_rescore"]), len(rank))]
    imgs = dataset.open_split(ctx.data, split)
    x = torch.stack([as_float(dataset.decode_uint8(imgs.paths[int(i)], ctx.input_size, ctx.cv2_mode, ctx.resize))
                     for i in cand]) if len(cand) else torch.zeros(0, 3, ctx.input_size, ctx.input_size)
    steps = int(s["audit_ig_steps"])
    return rescore(ctx.model, x, rows.pred[cand], rows.confidence[cand], cand, steps=steps,
                   window=int(s["audit_spot"]), grid=int(s["audit_grid"]), batch_size=steps + 1)


def task_audit(ctx) -> AuditResult:
    """Audit a whole split (--split, default the eval split) with --engine local|ray: audit.csv and audit.png."""
    from outputs import save_maps, write_csv

    if not dataset.is_food11(ctx.data):
        raise Skipped(f"{ctx.data} is not a Food-11 tree: the audit reads a whole split")
    split = ctx.opts.split or ctx.opts.eval_split
    engine = ctx.opts.engine
    cfg = config(ctx, split)
    t0 = time.perf_counter()
    if engine == "ray":
        rows = run_ray(ctx.model, cfg, ctx.num_classes, ctx.opts.ray_address, ctx.device)
    else:
        rows = run_local(ctx.model, cfg, ctx.num_classes)
    seconds = time.perf_counter() - t0
    files = dataset.open_split(ctx.data, split).files
    s = ctx.settings
    summ = summarise(rows, ctx.num_classes, int(s["audit_clusters"]), ctx.seed, int(s["audit_spot"]))
    second = second_look(ctx, split, rows, summ.rank)
    final = reranked(summ.rank, second)
    top = np.argsort(final)[:int(s["audit_top"])]
    first_top = np.argsort(summ.rank)[:int(s["audit_top"])]
    marked = rows.has_mark >= 0
    written = [write_csv(ctx.out / "audit.csv", COLUMNS, csv_rows(files, rows, summ, second, final)),
               save_maps(ctx.out, "audit", rows.maps, files, rows.pred, rows.pred)]
    written.append(draw_audit(ctx, split, files, rows, summ, second, top, ctx.out / "audit.png"))
    return AuditResult(
        files=written, precision=ctx.precision, split=split, images=len(files), engine=engine,
        seconds=round(seconds, 3), layer=cfg.layer, grid=cfg.grid, steps=cfg.steps, border=cfg.border,
        spot=int(s["audit_spot"]), top=len(top),
        accuracy=float((rows.pred == rows.label)[rows.label >= 0].mean()) if (rows.label >= 0).any() else None,
        mean_border_mass=float(rows.border_mass.mean()), mean_deletion_auc=float(rows.deletion_auc.mean()),
        top_files=[files[i] for i in top],
        top_marked=int((rows.has_mark[top] == 1).sum()) if marked.all() else None,
        gradcam_top_marked=int((rows.has_mark[first_top] == 1).sum()) if marked.all() else None,
        rescored=len(second.index), ig_steps=int(s["audit_ig_steps"]), rescore_seconds=round(second.seconds, 3),
        marked_share=float((rows.has_mark == 1).mean()) if marked.all() else None,
        class_counts=summ.class_counts.tolist(), cluster_sizes=summ.cluster_sizes)


def draw_audit(ctx, split: str, files: list[str], rows: AuditRows, summ: AuditSummary, second: Rescore,
               top: np.ndarray, path: Path) -> Path:
    """audit.png: each most suspicious image in colour beside its Grad-CAM overlay, then every class's mean map."""
    import textwrap

    import draw

    pairs, ncols = 4, 8
    top_rows = -(-len(top) // pairs)
    mean_rows = -(-ctx.num_classes // ncols)
    fig, axes = draw.figure(top_rows + mean_rows, ncols, cell=(0.875, 1.14),
                            title=f"Audit of {split}/ ({len(files)} images): the {len(top)} most suspicious "
                                  "predictions beside their Grad-CAM maps, then each class's mean map")
    imgs = dataset.open_split(ctx.data, split)
    names = ctx.class_names
    look = {int(i): k for k, i in enumerate(second.index)}
    wrap = lambda text: textwrap.fill(textwrap.shorten(text, 40, placeholder="..."), 16)  # noqa: E731
    for k, i in enumerate(top):
        left, right = axes[k // pairs, 2 * (k % pairs)], axes[k // pairs, 2 * (k % pairs) + 1]
        x = dataset.decode_uint8(imgs.paths[i], ctx.input_size, ctx.cv2_mode, ctx.resize).float() / 255.0
        up = F.interpolate(torch.from_numpy(rows.maps[i])[None, None], size=(ctx.input_size,) * 2, mode="bilinear",
                           align_corners=False)[0, 0].numpy()
        lb = int(rows.label[i])
        draw.show_image(left, x, title=f"#{k + 1} {files[i]}\n" + wrap(f"true {names[lb]}" if lb >= 0 else ""))
        if rows.has_mark[i] == 1:   # graded with the demo's mark masks, never read by the score
            left.text(0.03, 0.04, "stamp", transform=left.transAxes, fontsize=6, va="bottom",
                      bbox=dict(boxstyle="square,pad=0.15", fc="white", ec="none", alpha=0.85))
        score = second.score[look[int(i)]] if int(i) in look else summ.suspicion[i]
        im = draw.show_overlay(right, x, draw.normalize(up), vrange=(0.0, 1.0),
                               title=wrap(f"pred {names[int(rows.pred[i])]}") +
                               f"\np {rows.confidence[i]:.2f}\nscore {score:.2f}")
        left.title.set_fontsize(6.5)
        right.title.set_fontsize(6.5)
    for k in range(len(top) * 2, top_rows * ncols):
        axes[k // ncols, k % ncols].axis("off")
    vmax = float(summ.class_means.max()) or 1.0
    spare = []
    for c in range(mean_rows * ncols):
        ax = axes[top_rows + c // ncols, c % ncols]
        if c >= ctx.num_classes:
            spare.append(ax)
            continue
        mean_im = draw.show_map(ax, summ.class_means[c], vrange=(0.0, vmax),
                                title=f"{wrap(names[c])}\nmean of {int(summ.class_counts[c])}")
        ax.title.set_fontsize(6.5)
    for ax in spare:
        ax.axis("off")
    bars = ([(im, "Grad-CAM / its maximum")] if len(top) else []) + \
        ([(mean_im, "mean share of map mass per cell")] if ctx.num_classes else [])
    for k, (handle, label) in enumerate(bars):   # in spare cells, two cells wide when there is room
        if len(spare) >= 2 * len(bars):
            spare[2 * k].axis("off")
            draw.colorbar_in(spare[2 * k + 1], handle, label)
            pos = spare[2 * k].get_position().union([spare[2 * k].get_position(), spare[2 * k + 1].get_position()])
            spare[2 * k + 1].set_position(pos)
        elif len(spare) > k:
            draw.colorbar_in(spare[k], handle, label)
    draw.layout(fig, top=0.55)
    if len(spare) < len(bars):   # no spare cell: the bars go beside the grid
        for handle, label in bars[len(spare):]:
            draw.colorbar(fig, handle, list(axes.flat), label)
    return draw.save(fig, path)
