"""The built-in attribution methods, registered with the entry point (`explain.METHODS`), in comparison-grid order.

Each is a short variant: it calls its compute function and returns an Attribution with the method's extras.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

import lime_explain
import occlusion as occlusion_mod
import saliency
import shap_explain
from attribution import Attribution, Method, register
from model import user_net


def _vanilla(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int,
             keys: list, progress: Any = None) -> Attribution:
    """Max over channels of |d logit / dx| (Simonyan et al. 2014)."""
    return Attribution("vanilla", saliency.vanilla(model, images, targets, batch_size), targets.numpy())


def _smoothgrad(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int,
                keys: list, n: int, sigma: float, progress: Any = None) -> Attribution:
    """Mean vanilla map over n noisy copies (Smilkov et al. 2017)."""
    maps = saliency.smoothgrad(model, images, targets, n=n, sigma=sigma, seed=seed, batch_size=batch_size, keys=keys,
                               progress=progress)
    return Attribution("smoothgrad", maps, targets.numpy(), sigma=float(sigma))


def _ig(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int, keys: list,
        steps: int, baseline: str, progress: Any = None) -> Attribution:
    """Integrated Gradients with the trapezoid rule (Sundararajan et al. 2017)."""
    maps, gaps = saliency.integrated_gradients(model, images, targets, steps=steps, baseline=baseline,
                                               batch_size=batch_size, progress=progress)
    return Attribution("integrated_gradients", maps, targets.numpy(), gaps=gaps)


def _gradcam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int,
             keys: list, layer: str | nn.Module | None, progress: Any = None) -> Attribution:
    """Grad-CAM at a layer of the user's network (default: the last 4-D non-pooling module)."""
    net = user_net(model)
    name = layer if isinstance(layer, str) else None
    if layer is None:
        name = saliency.default_gradcam_layer(net, images.shape[-1])
    module = saliency.find_layer(net, name) if name is not None else layer
    if name is None:
        name = next((n for n, m in net.named_modules() if m is module), type(module).__name__)
    maps = saliency.gradcam(model, images, targets, module, batch_size)
    return Attribution("gradcam", maps, targets.numpy(), layer=name)


def _lime(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int, keys: list,
          samples: int, segments: int, compactness: float, sigma: float, extra_labels: Any = None,
          progress: Any = None) -> Attribution:
    """LIME with SLIC superpixels on softmax probabilities (Ribeiro et al. 2016)."""
    return lime_explain.lime_attribution(model, images, targets, batch_size=batch_size, seed=seed, keys=keys,
                                         samples=samples, segments=segments, compactness=compactness,
                                         sigma=sigma, extra_labels=extra_labels, progress=progress)


def _occlusion(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int,
               keys: list, patch: int, stride: int, value: float, progress: Any = None) -> Attribution:
    """Drop of the target probability under a sliding grey patch (Zeiler & Fergus 2014)."""
    maps = occlusion_mod.occlusion(model, images, targets.numpy(), patch=patch, stride=stride, value=value,
                                   batch_size=batch_size, progress=progress)
    return Attribution("occlusion", maps, targets.numpy())


def _shap(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, batch_size: int, seed: int, keys: list,
          max_evals: int, masker: str | None, round_size: int, progress: Any = None) -> Attribution:
    """Partition SHAP over a blur masker on softmax probabilities (Lundberg & Lee 2017)."""
    return shap_explain.shap_attribution(model, images, targets, batch_size=batch_size, seed=seed, keys=keys,
                                         max_evals=max_evals, masker=masker, round_size=round_size,
                                         progress=progress)


register(Method("vanilla", "vanilla gradient", _vanilla, False))
register(Method("smoothgrad", "SmoothGrad", _smoothgrad, False, {"n": "smoothgrad_n", "sigma": "smoothgrad_sigma"},
                sanity={"n": "sanity_smoothgrad_n"}))
register(Method("integrated_gradients", "Integrated Gradients", _ig, False,
                {"steps": "ig_steps", "baseline": "ig_baseline"}, sanity={"steps": "sanity_ig_steps"}, signed=True))
register(Method("gradcam", "Grad-CAM", _gradcam, False, hooks=True, fixed={"layer": None}))
register(Method("lime", "LIME", _lime, True,
                {"samples": "lime_samples", "segments": "lime_segments", "compactness": "lime_compactness",
                 "sigma": "lime_sigma"}, signed=True, batch_setting="lime_batch_size", fixed={"extra_labels": None}))
register(Method("shap", "SHAP", _shap, True,
                {"max_evals": "shap_max_evals", "masker": "shap_masker", "round_size": "shap_round_size"},
                signed=True, batch_setting="shap_batch_size"))
register(Method("occlusion", "occlusion", _occlusion, True,
                {"patch": "occlusion_patch", "stride": "occlusion_stride", "value": "occlusion_value"}, signed=True))
