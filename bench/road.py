"""Benchmark (not a test): our ROAD (road.py, run by metrics.perturbation_curves) against pytorch-grad-cam's and
Quantus's ROAD on the same images, maps and removal fractions.

    python bench/road.py [--images 8] [--rounds 1] [--threads 1] [--clock cpu|wall] [--raw]

The demo checkpoint (context.build on the embedded demo, as tests/conftest.py's make_ctx: [0,1] RGB in, 11
classes), the first unstamped full-contrast validation image of the first --images classes (demo.gt_subset),
targets = the true labels. Two maps per image: Grad-CAM (explain.attribute, its default layer) and a uniform
random map. Every implementation gets the same pixel order: metrics.pixel_ranks with the trust task's tie-break
seeds (Grad-CAM's upsampled ReLU map has many tied pixels; pytorch-grad-cam's percentile threshold would remove a
whole tie at once), handed to the peers as the score H*W - 1 - rank (unique values). Removal at 10, 20, .., 90%
of the pixels, most relevant first (MoRF) and least relevant first (LeRF), ROAD noise std 0.01.

  - ours fast: metrics.perturbation_curves(fill="road", steps=10) with the trust task's ranks and seeded noise
    fields, i.e. what deletion_insertion(..., steps=10, fill="road", order=...) runs for its removal curve
    (0, 10, .., 90% removed; the 0% point is dropped here); the imputer is road.fast (cascadic multigrid);
  - ours exact: the same call with road.fast swapped for road.exact (scipy sparse solve, per image);
  - pytorch-grad-cam: ROADMostRelevantFirstAverage / ROADLeastRelevantFirstAverage(percentiles 10..90) with
    ClassifierOutputSoftmaxTarget(label). Its percentile is the share KEPT (MoRF at 80 removes the top 20%), so
    the same nine levels; its threshold keeps floor(q/100 * (H*W - 1)) + 1 pixels, one more than ours at most.
    It returns the mean over levels of p(after) - p(original image); we add p(original) back. Noise: its own
    (torch's global generator, seeded 0);
  - Quantus: quantus.ROAD(percentages, noise=0.01, normalise=False, abs=False) on N x 1 x H x W maps. Quantus
    0.6.0 broadcasts the map to the image's 3 channels, ranks the 3*H*W features, but cuts p% of H*W of them and
    indexes its H*W pixel mask with feature indices, so on RGB it raises IndexError. We pass its own
    noisy_linear_imputation as perturb_func on the pixels whose three channel features were all cut, and
    percentages 3x ours (30..270), so the removed set is exactly ours (floor(p/100 * H*W) top pixels). It has
    MoRF only: LeRF is MoRF of the reversed order. Its score is the share of levels at which the argmax is still
    the label (it returns that averaged over the images, per level); a model wrapper records every softmax row
    it sees, so we also read its per-image mean p(label) over the levels. Noise: numpy's global generator, 0.
Scores: per (image, map, order) the mean softmax probability of the label over the nine levels (the 9-point
curve's mean height; our 16-step AUC is a trapezoid over 0..15/16 instead, not used here). "acc" is Quantus's
definition (share of levels still classified as the label), computed for ours from the same recorded rows.
r: Pearson correlation over all (image, map, order) scores, and within each order; one more line sets our trust
protocol's own score (16 steps, 0..15/16 removed, trapezoid AUC, ours fast) against each peer's nine-level score.
--raw also runs pytorch-grad-cam on the raw Grad-CAM maps (its own tie handling) against ours.

Section 1, the imputers alone: on each image the top 20/50/80% of the Grad-CAM map (one blob-like hole) and of
the random map (scattered pixels) are filled by road.exact, road.fast, pytorch-grad-cam's
NoisyLinearImputer(noise=0) and Quantus's noisy_linear_imputation(noise=0); the table gives the Pearson r of each
against pytorch-grad-cam's filled pixels (all channels, removed pixels only), min and mean over the images and
both maps. "+noise" is ROAD's own noise floor: pytorch-grad-cam's fill plus N(0, 0.01) against itself.

Timing: each implementation scores every (image, map, order) at the nine levels (the same imputations and
forward passes, plus each one's own extra: ours one unperturbed pass per curve, pytorch-grad-cam one per level),
--rounds times interleaved, the median printed with the ratios to ours fast and ours exact and the peak resident
set above the one before the call (Linux VmHWM, as bench/peers.py; 0 where it did not rise). By default one thread
and this process's CPU time.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import context  # noqa: E402
import dataset  # noqa: E402
import demo  # noqa: E402
import main  # noqa: E402
import metrics  # noqa: E402
import road  # noqa: E402
import seeds  # noqa: E402
import settings  # noqa: E402
from bench.peers import measured  # noqa: E402
from explain import attribute  # noqa: E402

LEVELS = tuple(range(10, 100, 10))   # percent of the pixels removed
CUTS = (20, 50, 80)                  # section 1's removal levels
NOISE = 0.01
SEED = 0
IMPLS = ("ours fast", "ours exact", "pytorch-grad-cam", "quantus")
ORDERS = ("morf", "lerf")
MAPS = ("gradcam", "random")


class Recorder(nn.Module):
    """The model, recording the softmax rows of every forward pass (for the peers' per-image scores)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.rows: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.rows.append(torch.softmax(out.detach().float(), 1).cpu())
        return out

    def take(self) -> torch.Tensor:
        rows, self.rows = torch.cat(self.rows), []
        return rows


@contextlib.contextmanager
def exact_fill() -> Iterator[None]:
    """road.impute with road.exact (per image) in place of the multigrid fill."""
    fast = road.fast

    def solve(images: torch.Tensor, removed: torch.Tensor, **_: object) -> torch.Tensor:
        return torch.stack([torch.from_numpy(road.exact(im.numpy(), r[0].numpy())).float()
                            for im, r in zip(images.float(), removed.bool())])

    road.fast = solve
    try:
        yield
    finally:
        road.fast = fast


def demo_batch(n: int) -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    """The demo checkpoint as the pipeline holds it, n validation images and their labels."""
    data = demo.ensure_demo_data()
    with tempfile.TemporaryDirectory() as out:
        ctx = context.build(context.Options.from_args(main.parse_args(["--out", out, "--device", "cpu"])))
    val = dataset.open_split(data, "validation")
    idx = [val.files.index(f) for f in demo.gt_subset(data, per_class=1)[:n]]
    x, _ = dataset.load_batch(val, idx, 128)
    return ctx.model, x, np.array([val.labels[i] for i in idx], dtype=np.int64)


def pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """N x H*W ranks (0 = most relevant), ties broken as deletion_insertion breaks them (seed, image position)."""
    return np.stack([metrics.pixel_ranks(m, seeds.rng(SEED, "trust", "ties", k)) for k, m in enumerate(maps)])


def noise_fields(x: torch.Tensor) -> torch.Tensor:
    """deletion_insertion's per-image ROAD noise fields."""
    return metrics.noise_fields(tuple(x.shape[1:]), [int(seeds.rng(SEED, "road-noise", k).integers(0, 2 ** 62))
                                                      for k in range(len(x))], NOISE)


# ---------------------------------------------------------------- section 1: the imputers


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def imputers(x: torch.Tensor, ranks: dict[str, np.ndarray]) -> dict[tuple[int, str], list[float]]:
    """{(cut, imputer): r per (image, map)} against pytorch-grad-cam's noise-free fill."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from quantus.functions.perturb_func import noisy_linear_imputation

    pgc = NoisyLinearImputer(noise=0.0)
    rng = np.random.default_rng(SEED)
    n, c, h, w = x.shape
    out: dict[tuple[int, str], list[float]] = {}
    for cut in CUTS:
        k = cut * h * w // 100
        removed = np.stack([r < k for m in MAPS for r in ranks[m]]).reshape(-1, h, w)   # map-major
        imgs = torch.cat([x] * len(MAPS))
        fast = road.fast(imgs, torch.as_tensor(removed)[:, None]).numpy()
        for i, (img, rem) in enumerate(zip(imgs, removed)):
            ref = pgc(img, torch.as_tensor(~rem, dtype=torch.float32)).numpy()[:, rem]
            fills = {"ours exact": road.exact(img.numpy(), rem)[:, rem], "ours fast": fast[i][:, rem],
                     "quantus": noisy_linear_imputation(img.numpy(), np.flatnonzero(rem), noise=0.0)[:, rem],
                     "+noise": ref + NOISE * rng.standard_normal(ref.shape)}
            for name, fill in fills.items():
                out.setdefault((cut, name), []).append(pearson(fill, ref))
    return out


# ---------------------------------------------------------------- section 2: the scores


def calls(model: Recorder, x: torch.Tensor, labels: np.ndarray, ranks: dict[str, np.ndarray], gradcam: np.ndarray
          ) -> dict[str, Callable[[], dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]]]:
    """Per implementation, a zero-argument call returning {(map, order): (mean p(label), acc) per image}."""
    import quantus
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    from quantus.functions.perturb_func import noisy_linear_imputation

    n, _, h, w = x.shape
    hw = h * w
    fields = noise_fields(x)
    bs = int(settings.resolve("cpu")["batch_size"])
    lab = torch.as_tensor(labels)
    with torch.inference_mode():
        p0 = torch.softmax(model.model(x).float(), 1)[torch.arange(n), lab].numpy()

    def summary(rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:   # rows n x levels x classes
        return (rows[torch.arange(n), :, lab].mean(1).numpy().astype(np.float64),
                (rows.argmax(2) == lab[:, None]).float().mean(1).numpy().astype(np.float64))

    def ours() -> dict:
        res = {}
        for m in MAPS:
            for order in ORDERS:
                model.rows = []
                metrics.perturbation_curves(model, x, ranks[m], labels, "deletion" if order == "morf" else "lerf",
                                            steps=10, batch_size=bs, fill="road", noise=fields)
                res[(m, order)] = summary(model.take().view(n, 10, -1)[:, 1:])   # drop the 0% point
        return res

    def ours_exact() -> dict:
        with exact_fill():
            return ours()

    def pgc(raw: dict[str, np.ndarray] | None = None) -> dict:
        targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in labels]
        res = {}
        for m in MAPS if raw is None else raw:
            score = (hw - 1 - ranks[m]).reshape(n, h, w).astype(np.float32) if raw is None else raw[m]
            for order, cls in (("morf", ROADMostRelevantFirstAverage), ("lerf", ROADLeastRelevantFirstAverage)):
                torch.manual_seed(SEED)
                diff = cls(percentiles=[100 - p for p in LEVELS])(x, score, targets, model)
                model.rows = []
                res[(m, order)] = (diff.astype(np.float64) + p0, np.full(n, np.nan))
        return res

    def pixels_cut(arr: np.ndarray, indices: np.ndarray, noise: float = NOISE, **kw: object) -> np.ndarray:
        """Quantus's imputer on the pixels whose 3 channel features were all among the cut ones."""
        px, count = np.unique(np.asarray(indices) % hw, return_counts=True)
        return noisy_linear_imputation(arr, px[count == 3], noise=noise, **kw)

    def qts() -> dict:
        metric = quantus.ROAD(percentages=[3 * p for p in LEVELS], noise=NOISE, normalise=False, abs=False,
                              perturb_func=pixels_cut, disable_warnings=True, display_progressbar=False)
        res = {}
        for m in MAPS:
            for order in ORDERS:
                score = (hw - 1 - ranks[m]) if order == "morf" else ranks[m]
                np.random.seed(SEED)
                model.rows = []
                acc = metric(model=model, x_batch=x.numpy(), y_batch=labels, a_batch=score.reshape(n, 1, h, w)
                             .astype(np.float32), device="cpu", batch_size=max(n, 1), softmax=True, channel_first=True)
                rows = model.take()[-n * len(LEVELS):].view(len(LEVELS), n, -1).transpose(0, 1)
                p, a = summary(rows)
                if not np.allclose([acc[3 * lv] for lv in LEVELS], (rows.argmax(2) == lab[:, None]).float().mean(0)):
                    print("  note: recorded rows do not reproduce Quantus's returned accuracies", flush=True)
                res[(m, order)] = (p, a)
        return res

    return {"ours fast": ours, "ours exact": ours_exact, "pytorch-grad-cam": pgc, "quantus": qts,
            "pytorch-grad-cam raw": lambda: pgc({"gradcam": gradcam})}


# ---------------------------------------------------------------- main


def fmt_r(a: list[float]) -> str:
    return f"{min(a):7.4f} {float(np.mean(a)):7.4f}"


def main_() -> None:
    """Section 1 (imputers), section 2 (scores and r), section 3 (time, ratios, peak memory)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--raw", action="store_true", help="also pytorch-grad-cam on the raw Grad-CAM maps (its own ties)")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    from importlib.metadata import version

    t_start = time.perf_counter()
    model, x, labels = demo_batch(a.images)
    gradcam = attribute(model, x, labels, "gradcam").maps
    maps = {"gradcam": gradcam, "random": np.random.default_rng(SEED).random(gradcam.shape).astype(np.float32)}
    ranks = {m: pixel_ranks(v) for m, v in maps.items()}
    tied = float(np.mean([(g == g.min()).mean() for g in gradcam]))
    print(f"demo checkpoint, {len(x)} validation images (classes {', '.join(map(str, labels))}), 128 x 128, "
          f"{torch.get_num_threads()} thread(s), {a.clock} clock; torch {torch.__version__}, pytorch-grad-cam "
          f"{version('grad-cam')}, quantus {version('quantus')}; Grad-CAM maps: "
          f"{tied:.0%} of the pixels tied at the minimum", flush=True)

    print("\n1. imputed pixels: Pearson r against pytorch-grad-cam's NoisyLinearImputer(noise=0), min and mean over "
          f"{len(x)} images x {len(MAPS)} maps (top share of Grad-CAM: a blob; of random: scattered)")
    r1 = imputers(x, ranks)
    names = ("ours exact", "ours fast", "quantus", "+noise")
    print(f"{'removed':>8} " + " ".join(f"{nm + ' min':>12} {'mean':>7}" for nm in names))
    for cut in CUTS:
        print(f"{cut:7d}% " + " ".join(f"{'':>5}{fmt_r(r1[(cut, nm)])}" for nm in names))

    rec = Recorder(model).eval()
    fns = calls(rec, x, labels, ranks, gradcam)
    res: dict[str, list[tuple[float, float]]] = {}
    scores: dict[str, dict] = {}
    for rnd in range(a.rounds):
        for impl in IMPLS if rnd % 2 == 0 else IMPLS[::-1]:
            sec, mem, out = measured(fns[impl], clock)
            res.setdefault(impl, []).append((sec, mem))
            scores[impl] = out
            print(f"  round {rnd + 1} {impl:<17} {sec:7.1f} s", flush=True)

    print("\n2. scores: mean p(label) over 10..90% removed (acc: share of levels still classified as the label)")
    print(f"{'image':>5} {'map':<8} {'order':<5} {'ours fast':>9} {'ours exact':>10} {'grad-cam':>9} {'quantus':>8} "
          f"{'acc ours':>8} {'acc qts':>8}")
    for m in MAPS:
        for order in ORDERS:
            for i in range(len(x)):
                v = [scores[impl][(m, order)][0][i] for impl in IMPLS]
                print(f"{i:5d} {m:<8} {order:<5} {v[0]:9.4f} {v[1]:10.4f} {v[2]:9.4f} {v[3]:8.4f} "
                      f"{scores['ours fast'][(m, order)][1][i]:8.2f} {scores['quantus'][(m, order)][1][i]:8.2f}")

    def flat(impl: str, k: int, orders: tuple[str, ...] = ORDERS) -> np.ndarray:
        return np.concatenate([scores[impl][(m, o)][k] for m in MAPS for o in orders])

    print(f"\nPearson r over the {2 * len(MAPS) * len(x)} (image, map, order) scores [MoRF only, LeRF only]; "
          "mean |difference|")
    pairs = [("ours fast", "pytorch-grad-cam", 0), ("ours fast", "quantus", 0), ("ours exact", "pytorch-grad-cam", 0),
             ("ours exact", "quantus", 0), ("ours fast", "ours exact", 0), ("pytorch-grad-cam", "quantus", 0),
             ("ours fast", "quantus", 1), ("ours exact", "quantus", 1)]
    for left, right, k in pairs:
        with np.errstate(invalid="ignore", divide="ignore"):
            rs = [pearson(flat(left, k, o), flat(right, k, o)) for o in (ORDERS, ("morf",), ("lerf",))]
        diff = float(np.mean(np.abs(flat(left, k) - flat(right, k))))
        label = f"{left} vs {right}" + (" (acc)" if k else "")
        ok = "ok" if rs[0] >= 0.95 else "below 0.95"
        print(f"  {label:<40} r {rs[0]:.4f} [{rs[1]:.4f}, {rs[2]:.4f}]  |d| {diff:.4f}  {ok}")

    protocol = {}   # the trust task's own protocol: 16 steps, 0 .. 15/16 removed, trapezoid AUC (ours fast)
    fields = noise_fields(x)
    for m in MAPS:
        for order in ORDERS:
            xs, ys = metrics.perturbation_curves(model, x, ranks[m], labels, "deletion" if order == "morf" else "lerf",
                                                 steps=16, fill="road", noise=fields)
            protocol[(m, order)] = metrics.auc(xs, ys)
    auc16 = np.concatenate([protocol[(m, o)] for m in MAPS for o in ORDERS])
    for peer in ("pytorch-grad-cam", "quantus"):
        print(f"  {'ours 16-step AUC vs ' + peer:<40} r {pearson(auc16, flat(peer, 0)):.4f}  (the trust table's "
              f"protocol against the peer's nine levels)")

    if a.raw:
        raw = fns["pytorch-grad-cam raw"]()
        for order in ORDERS:
            mine, theirs = scores["ours exact"][("gradcam", order)][0], raw[("gradcam", order)][0]
            print(f"  raw Grad-CAM maps, {order}: ours exact vs pytorch-grad-cam r {pearson(mine, theirs):.4f}, "
                  f"mean |d| {float(np.mean(np.abs(mine - theirs))):.4f}, its mean score {theirs.mean():.4f} "
                  f"(ours {mine.mean():.4f})")

    base = statistics.median(v[0] for v in res["ours fast"])
    print(f"\n3. time for the same work ({len(x)} images x {len(MAPS)} maps x {len(ORDERS)} orders x {len(LEVELS)} "
          f"levels = {len(x) * len(MAPS) * len(ORDERS) * len(LEVELS)} imputations), median of {a.rounds}")
    exact = statistics.median(v[0] for v in res["ours exact"])
    print(f"{'implementation':<18} {'s':>7} {'/ ours fast':>11} {'/ ours exact':>12} {'peak MiB':>9}")
    for impl in IMPLS:
        sec = statistics.median(v[0] for v in res[impl])
        mem = max(0.0, max(v[1] for v in res[impl]))
        print(f"{impl:<18} {sec:7.2f} {sec / base:10.1f}x {sec / exact:11.2f}x {mem:9.0f}")
    print(f"\nwhole run {time.perf_counter() - t_start:.0f} s wall")


if __name__ == "__main__":
    main_()
