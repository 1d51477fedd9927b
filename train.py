"""The train task: the HW3 recipe (flip/rotation augmentation, Adam, cross-entropy, best-on-validation kept)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import dataset
import demo
from context import _floats, pick_device
from errors import UserError
from model import Preprocess, build_network
from outputs import atomic


def load_split(images: dataset.ImageSet, size: int, cv2_mode: bool, workers: int = 2) -> torch.Tensor:
    """A whole split as one uint8 tensor N x 3 x size x size (decoded in worker processes)."""
    from tqdm import tqdm

    loader = dataset.split_loader(images, size, 64, cv2_mode, workers)
    parts = [x for x, _ in tqdm(dataset.batches(loader), total=len(loader), desc=f"load {images.name}",
                                leave=False, disable=None)]
    return torch.cat(parts)


def augment(x: torch.Tensor, gen: torch.Generator, max_deg: float = 15.0, noise: float = 0.0) -> torch.Tensor:
    """Random horizontal flip, rotation (±max_deg) and Gaussian pixel noise (std up to `noise`), drawn from gen."""
    n = len(x)
    if noise > 0:
        std = torch.rand(n, 1, 1, 1, generator=gen) * noise
        x = (x + torch.randn(x.shape, generator=gen) * std).clamp(0, 1)
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_deg)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int = 128) -> float:
    """Top-1 accuracy of a model on uint8 images."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            logits = model(x[i:i + batch].to(device).float() / 255.0)
            correct += int((logits.argmax(1).cpu() == y[i:i + batch]).sum())
    return correct / max(1, len(x))


def _labelled(images: dataset.ImageSet, limit: int | None) -> tuple[list[int], torch.Tensor]:
    """Indices (first `limit` per class when given) and labels of a labelled split."""
    if not images.labelled:
        raise UserError(f"train: {images.name}/ images must be named <label>_<n>.jpg")
    seen: dict[int, int] = {}
    keep = []
    for i, lb in enumerate(images.labels):
        seen[lb] = seen.get(lb, 0) + 1
        if limit is None or seen[lb] <= limit:
            keep.append(i)
    return keep, torch.tensor([images.labels[i] for i in keep])


def task_train(args: argparse.Namespace) -> Path:
    """Train --arch on --data (default: the demo) and save a checkpoint whose metadata configures later runs."""
    from tqdm import tqdm

    data = demo.ensure_demo_data() if args.data is None else Path(args.data)
    if not dataset.is_food11(data):
        raise UserError(f"train: {data} is not a Food-11 folder (training/ and validation/)")
    arch = args.arch or "hw3"
    size = args.input_size or 128
    names = dataset.read_class_names(args.class_names)
    width = args.width if args.width is not None else 1.0
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    tr_set, va_set = dataset.open_split(data, "training"), dataset.open_split(data, "validation")
    tr_idx, y_tr = _labelled(tr_set, args.limit)
    va_idx, y_va = _labelled(va_set, args.limit)
    tr_set = dataset.ImageSet(tr_set.name, [tr_set.paths[i] for i in tr_idx], [tr_set.labels[i] for i in tr_idx])
    va_set = dataset.ImageSet(va_set.name, [va_set.paths[i] for i in va_idx], [va_set.labels[i] for i in va_idx])
    x_tr, x_va = load_split(tr_set, size, args.cv2_preprocess), load_split(va_set, size, args.cv2_preprocess)
    num_classes = args.num_classes or len(names)
    net = build_network(arch, num_classes, width, size)
    stages: list[dict] = []
    if args.init:
        from model import read_checkpoint

        state, init_meta = read_checkpoint(args.init)
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise UserError(f"train: --init {args.init} does not fit {arch} at width {width}: "
                            f"{str(exc).splitlines()[0]}") from None
        stages = list(init_meta.get("stages") or [{k: init_meta.get(k) for k in ("epochs", "lr", "noise", "seed")}])
    mean, std = _floats(args.mean, "--mean"), _floats(args.std, "--std")
    bgr = bool(args.bgr or args.cv2_preprocess)
    model = Preprocess(net, mean, std, bgr).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = args.schedule
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, args.epochs)) if schedule == "cosine" else None
    best, best_state = -1.0, None
    bar = tqdm(range(args.epochs), desc="train", unit="epoch", disable=None)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            xb = augment(x_tr[idx].float() / 255.0, gen, noise=args.noise).to(device)
            yb = y_tr[idx].to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        if decay is not None:
            decay.step()
        val = accuracy(model, x_va, y_va, device)
        if val > best:
            best = val
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        msg = f"epoch {epoch + 1}/{args.epochs} loss {loss_sum / len(x_tr):.4f} acc {correct / len(x_tr):.3f} val {val:.3f}"
        bar.set_postfix_str(msg.split(" ", 2)[2])
        print(msg, flush=True)
    meta = {"arch": arch, "arch_options": {"width": width}, "input_size": size, "class_names": names,
            "bgr": bgr, "mean": mean, "std": std, "val_acc": best, "epochs": args.epochs, "seed": args.seed,
            "noise": args.noise,
            "stages": stages + [{"epochs": args.epochs, "lr": args.lr, "schedule": schedule, "noise": args.noise,
                                 "seed": args.seed}],
            "trained_on": "demo" if args.data is None else str(data)}
    meta = {k: v for k, v in meta.items() if v is not None}
    save = Path(args.save) if args.save else Path(args.out) / "checkpoint.pt"
    try:
        with atomic(save) as tmp:
            torch.save({"model_state_dict": best_state, "meta": meta}, tmp)
    except OSError as exc:
        raise UserError(f"cannot write checkpoint {save}: {exc.strerror or exc}") from None
    print(f"saved {save} (best validation accuracy {best:.4f})", flush=True)
    return save


def evaluate_checkpoint(path: Path, data: Path) -> float:
    """Validation accuracy of a saved checkpoint on a Food-11 tree (used by tests and the README check)."""
    from model import read_checkpoint

    state, meta = read_checkpoint(path)
    net = build_network(meta["arch"], len(meta["class_names"]), meta["arch_options"]["width"], meta["input_size"])
    net.load_state_dict(state)
    model = Preprocess(net, meta.get("mean"), meta.get("std"), meta.get("bgr", False)).eval()
    va = dataset.open_split(data, "validation")
    x = load_split(va, meta["input_size"], False)
    return accuracy(model, x, torch.tensor(va.labels), torch.device("cpu"))


