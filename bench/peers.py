"""Benchmark (not a test): our explainers side by side with Captum, pytorch-grad-cam and lime's default usage.

    python bench/peers.py [--images 4] [--rounds 3] [--threads 1] [--clock cpu|wall] [--only ig,lime,...]

One full-size hw3 (bench/run.py's random weights, eval mode, channels_last as context.build holds it), the
demo's default selected images (the first training image of each of the first four classes), targets = the
predictions, our settings' batch sizes and one thread count for everybody. Each method pair runs `--rounds`
times, interleaved (ours, peer, ours, peer, ...); the median time is printed with the ratio peer / ours.
Ours includes its one-time cost (fastpath.fast_fp32's BatchNorm folding for the gradient methods, fast_bf16's
weight casting for the forward-only ones), and runs at the default run's precision: bf16 for the forward-only
passes (occlusion, LIME) and SmoothGrad's gradients where the CPU computes it natively, fp32 for IG. Peers get the same model
object and, where they have one, our batch size:
  - Integrated Gradients, 64 steps, black baseline: captum IntegratedGradients (its default Gauss-Legendre
    rule), internal_batch_size = grad_batch_size, one image per call; ours: trapezoid rule over 65 points;
  - SmoothGrad, 50 samples, noise std 0.15 x the image's range: captum NoiseTunnel(Saliency),
    nt_samples_batch_size = grad_batch_size; ours: saliency.smoothgrad (stochastic: r is for information);
  - occlusion, 24-px grey (0.5) patch, stride 12, drop of the target's softmax probability: captum Occlusion,
    perturbations_per_eval = batch_size; ours also moves the last patch flush with the border (100 vs 81
    windows per image), so ours does more passes;
  - Grad-CAM at cnn.18: pytorch_grad_cam.GradCAM on chunks of grad_batch_size images;
  - LIME, 1000 samples: LimeImageExplainer().explain_instance(image, fn, num_samples=1000,
    batch_size=lime_batch_size) with lime's other defaults (top_labels=5, quickshift segmentation, hide_color
    None) and a plain classifier function (torch.no_grad, fp32); ours: lime_explain.lime_attribution (SLIC-100,
    the target's weights), as the lime task runs it. Different segmentations: no r.
Peak memory: the process's peak resident set during each call (Linux VmHWM, reset before it through
/proc/self/clear_refs), printed as the increase over the resident set before the call.
r: Pearson correlation per image of our map with the peer's (channels reduced as ours: IG summed over channels,
SmoothGrad max over channels), the minimum over the images; "r demo" is the same for the deterministic methods
on the trained demo checkpoint (hw3 width 0.25), whose probabilities move under occlusion (a random model's
barely do, so there bf16 rounding shows). The machine is shared by several busy
processes: by default one thread and this process's CPU time (time.process_time); --clock wall for wall time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dataset  # noqa: E402
import demo  # noqa: E402
import lime_explain as L  # noqa: E402
import occlusion as O  # noqa: E402
import saliency as S  # noqa: E402
import settings  # noqa: E402
from explain import fast_model  # noqa: E402
from fastpath import fast_bf16, fast_fp32  # noqa: E402
from model import Preprocess, build_network, native_bf16  # noqa: E402

METHODS = ("ig", "smoothgrad", "occlusion", "gradcam", "lime")
TARGETS = {"ig": 1.5, "smoothgrad": 1.5, "occlusion": 1.5, "gradcam": 1.0, "lime": 2.0}
PEERS = {"ig": "captum IntegratedGradients", "smoothgrad": "captum NoiseTunnel(Saliency)",
         "occlusion": "captum Occlusion", "gradcam": "pytorch_grad_cam.GradCAM", "lime": "lime default usage"}
LAYER = "cnn.18"
STEPS, SG_N, SG_SIGMA, PATCH, STRIDE, LIME_N = 64, 50, 0.15, 24, 12, 1000


def vm_kib(key: str) -> int:
    """A Vm* line of /proc/self/status in KiB (0 where there is none)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measured(fn: Callable[[], np.ndarray], clock: Callable[[], float]) -> tuple[float, float, np.ndarray]:
    """(seconds, peak MiB above the resident set before the call, result) of one call."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # reset VmHWM to the current resident set
    except OSError:
        pass
    rss0 = vm_kib("VmRSS")
    t0 = clock()
    out = fn()
    return clock() - t0, (vm_kib("VmHWM") - rss0) / 1024, out


DETERMINISTIC = ("ig", "occlusion", "gradcam")


def demo_model_r(x: torch.Tensor, s: dict, bf16: bool, methods: list[str]) -> dict[str, float]:
    """r of ours against the peer on the trained demo checkpoint (a random model's probabilities barely move)."""
    from model import load_weights, read_checkpoint

    state, _ = read_checkpoint(demo.DEMO_CHECKPOINT)
    net = build_network("hw3", 11, 0.25)
    load_weights(net, state, demo.DEMO_CHECKPOINT, "hw3")
    model = Preprocess(net).eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        t = model(x).argmax(1).numpy()
    calls = pairs(model, x, t, s, bf16)
    return {m: corr(calls[m][0](), calls[m][1]()) for m in methods}


def hw3_model() -> nn.Module:
    """bench/run.py's random full-size hw3, as context.build holds it (eval, channels_last)."""
    torch.manual_seed(0)
    return Preprocess(build_network("hw3")).eval().to(memory_format=torch.channels_last)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest per-image Pearson r of two N x H x W map stacks."""
    return min(float(np.corrcoef(x.ravel(), y.ravel())[0, 1]) for x, y in zip(a, b))


def pairs(model: nn.Module, x: torch.Tensor, t: np.ndarray, s: dict, bf16: bool
          ) -> dict[str, tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]]:
    """(ours, peer) zero-argument calls per method, each returning N x H x W maps (LIME: None for the peer)."""
    from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency
    from lime.lime_image import LimeImageExplainer
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    gbs, bs, lbs = s["grad_batch_size"], s["batch_size"], s["lime_batch_size"]
    probs = nn.Sequential(model, nn.Softmax(dim=1))   # occlusion explains the target's probability

    def fwd() -> nn.Module:   # ours' forward-only model, built inside each timed call (its one-time cost counts)
        return fast_bf16(model) if bf16 else fast_fp32(model)

    def ours_ig() -> np.ndarray:
        return S.integrated_gradients(fast_fp32(model), x, t, steps=STEPS, baseline="black", batch_size=gbs)[0]

    def peer_ig() -> np.ndarray:
        ig = IntegratedGradients(model)
        return np.stack([ig.attribute(x[i:i + 1], baselines=torch.zeros_like(x[i:i + 1]), target=int(t[i]),
                                      n_steps=STEPS, internal_batch_size=gbs)[0].sum(0).detach().numpy()
                         for i in range(len(x))])

    def ours_sg() -> np.ndarray:   # as the pipeline runs it: BN folded, under bf16 autocast where the CPU has bf16
        run = fast_model(model, torch.device("cpu"), "bf16" if bf16 else "fp32", forward_only=False)
        return S.smoothgrad(run, x, t, n=SG_N, sigma=SG_SIGMA, seed=0, batch_size=gbs)

    def peer_sg() -> np.ndarray:
        nt = NoiseTunnel(Saliency(model))
        return np.stack([nt.attribute(x[i:i + 1], nt_type="smoothgrad", nt_samples=SG_N, nt_samples_batch_size=gbs,
                                      stdevs=SG_SIGMA * float(x[i].max() - x[i].min()),
                                      target=int(t[i]))[0].amax(0).detach().numpy() for i in range(len(x))])

    def ours_occ() -> np.ndarray:
        return O.occlusion(fwd(), x, t, patch=PATCH, stride=STRIDE, value=0.5, batch_size=bs)

    def peer_occ() -> np.ndarray:
        occ = Occlusion(probs)
        return np.stack([occ.attribute(x[i:i + 1], sliding_window_shapes=(3, PATCH, PATCH),
                                       strides=(3, STRIDE, STRIDE), baselines=0.5, target=int(t[i]),
                                       perturbations_per_eval=bs)[0].mean(0).detach().numpy()
                         for i in range(len(x))])

    def ours_cam() -> np.ndarray:   # as the pipeline runs it: the model as given (Method.hooks)
        return S.gradcam(model, x, t, model.net.get_submodule(LAYER), gbs)

    def peer_cam() -> np.ndarray:
        with GradCAM(model=model, target_layers=[model.net.get_submodule(LAYER)]) as cam:
            return np.concatenate([cam(input_tensor=x[i:i + gbs],
                                       targets=[ClassifierOutputTarget(int(c)) for c in t[i:i + gbs]])
                                   for i in range(0, len(x), gbs)])

    def ours_lime() -> np.ndarray:   # as the lime task runs it: the target's weights, fast_bf16 under bf16
        return L.lime_attribution(fwd(), x, torch.as_tensor(t), batch_size=lbs, seed=0, keys=list(range(len(x))),
                                  samples=LIME_N, segments=s["lime_segments"], compactness=s["lime_compactness"],
                                  sigma=s["lime_sigma"]).maps

    def plain_fn(images: np.ndarray) -> np.ndarray:   # what a lime user writes
        with torch.no_grad():
            batch = torch.tensor(images, dtype=torch.float32).permute(0, 3, 1, 2)
            return torch.softmax(model(batch), dim=1).numpy()

    def peer_lime() -> None:
        for i in range(len(x)):
            LimeImageExplainer().explain_instance(x[i].permute(1, 2, 0).numpy().astype(np.double), plain_fn,
                                                  num_samples=LIME_N, batch_size=lbs)
        return None

    return {"ig": (ours_ig, peer_ig), "smoothgrad": (ours_sg, peer_sg), "occlusion": (ours_occ, peer_occ),
            "gradcam": (ours_cam, peer_cam), "lime": (ours_lime, peer_lime)}


def main() -> None:
    """Time every pair in interleaved rounds and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--only", help="comma list of methods (default: all)")
    p.add_argument("--fp32", action="store_true", help="ours in fp32 for the forward-only passes too")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    clock = time.process_time if a.clock == "cpu" else time.perf_counter
    bf16 = native_bf16(torch.device("cpu")) and not a.fp32
    s = settings.resolve("cpu")
    imageset = dataset.open_split(demo.ensure_demo_data(), "training")
    idx = dataset.select(imageset, None)[:a.images]
    x, _ = dataset.load_batch(imageset, idx, 128)
    model = hw3_model()
    with torch.inference_mode():
        t = model(x).argmax(1).numpy()
    methods = [m for m in (a.only.split(",") if a.only else METHODS) if m]
    calls = pairs(model, x, t, s, bf16)
    trained = demo_model_r(x, s, bf16, [m for m in methods if m in DETERMINISTIC])
    print(f"full-size hw3 (random weights, channels_last), {len(x)} demo images, {torch.get_num_threads()} "
          f"thread(s), {a.clock} clock, torch {torch.__version__}; batch sizes: grad {s['grad_batch_size']}, "
          f"forward {s['batch_size']}, lime {s['lime_batch_size']}; ours' forward-only passes in "
          f"{'bf16' if bf16 else 'fp32'}", flush=True)
    for m in methods:   # warm-up: kernels and lazy imports, not timed
        for fn in calls[m]:
            if m not in ("lime", "smoothgrad"):
                fn()
    res: dict[tuple[str, int], list[tuple[float, float]]] = {}
    maps: dict[tuple[str, int], np.ndarray] = {}
    for r in range(a.rounds):
        for m in methods:
            for side in (0, 1) if r % 2 == 0 else (1, 0):   # alternate who goes first
                sec, mem, out = measured(calls[m][side], clock)
                res.setdefault((m, side), []).append((sec, mem))
                maps[(m, side)] = out
                print(f"  round {r + 1} {m:<10} {'ours' if side == 0 else 'peer'} {sec:7.1f} s", flush=True)
    print(f"\n{'method':<11} {'peer':<30} {'ours s':>7} {'peer s':>7} {'peer/ours':>9} {'target':>7} "
          f"{'ours MiB':>8} {'peer MiB':>8} {'r':>7} {'r demo':>7}")
    for m in methods:
        ours = statistics.median(v[0] for v in res[(m, 0)])
        peer = statistics.median(v[0] for v in res[(m, 1)])
        mem = [max(v[1] for v in res[(m, side)]) for side in (0, 1)]
        r = "-" if maps[(m, 1)] is None else f"{corr(maps[(m, 0)], maps[(m, 1)]):7.4f}"
        ok = "ok" if peer / ours >= TARGETS[m] else "MISS"
        rd = f"{trained[m]:7.4f}" if m in trained else "-"
        print(f"{m:<11} {PEERS[m]:<30} {ours:7.1f} {peer:7.1f} {peer / ours:8.2f}x {TARGETS[m]:6.1f}x "
              f"{mem[0]:8.0f} {mem[1]:8.0f} {r:>7} {rd:>7} {ok}")


if __name__ == "__main__":
    main()
