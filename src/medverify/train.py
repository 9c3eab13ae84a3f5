"""Training loop: Adam, cross-entropy, batch 64, fixed seeds, light augmentation,
model selection on the validation split, and optional PGD adversarial training (Madry et
al.: every batch is replaced by L-infinity PGD examples around its augmented images).

TrainConfig holds the one default of every training setting; the workflow schema's
defaults are checked against it (tests/test_external.py)."""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import models
from .data import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    architecture: str = "mlp"
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    brightness: float = 0.08  # max |beta| of the brightness jitter
    contrast: float = 0.08  # max |alpha - 1| of the contrast jitter
    noise_sigma: float = 0.01  # std of additive Gaussian noise
    threads: int = 1
    pgd_eps_k: float = 0.0  # PGD adversarial training radius in 8-bit units (k/255); 0 = off
    pgd_steps: int = 5  # PGD steps per batch
    pgd_step_k: float | None = None  # PGD step in 8-bit units; None = 2.5 * eps / steps

    @property
    def adversarial(self) -> bool:
        return self.pgd_eps_k > 0

    @property
    def pgd(self) -> dict:
        """The PGD settings as recorded in metrics.json ([0, 1] pixel units and k)."""
        step_k = (
            self.pgd_step_k
            if self.pgd_step_k is not None
            else 2.5 * self.pgd_eps_k / max(1, self.pgd_steps)
        )
        return {"eps_k": self.pgd_eps_k, "steps": self.pgd_steps, "step_k": step_k}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Brightness and contrast jitter plus Gaussian noise, clipped to [0, 1]."""
    n = x.shape[0]
    shape = (n,) + (1,) * (x.dim() - 1)
    if cfg.contrast > 0:
        alpha = 1 + (torch.rand(shape, generator=gen) * 2 - 1) * cfg.contrast
        mean = x.mean(dim=tuple(range(1, x.dim())), keepdim=True)
        x = mean + alpha * (x - mean)
    if cfg.brightness > 0:
        x = x + (torch.rand(shape, generator=gen) * 2 - 1) * cfg.brightness
    if cfg.noise_sigma > 0:
        x = x + torch.randn(x.shape, generator=gen) * cfg.noise_sigma
    return x.clamp(0.0, 1.0)


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> torch.Tensor:
    """L-infinity PGD around x (radius cfg.pgd_eps_k/255, random start), clipped to [0, 1]."""
    eps = cfg.pgd_eps_k / 255.0
    step = cfg.pgd["step_k"] / 255.0
    loss_fn = nn.CrossEntropyLoss()
    lo, hi = (x - eps).clamp(0.0, 1.0), (x + eps).clamp(0.0, 1.0)
    adv = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * eps).clamp(0.0, 1.0)
    for _ in range(cfg.pgd_steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(model(adv), y), adv)
        adv = torch.max(torch.min(adv.detach() + step * grad.sign(), hi), lo)
    return adv.detach()


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        out.append(model(torch.from_numpy(images[i : i + batch])).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(model: nn.Module, split: Split) -> float:
    return float((predict(model, split.images).argmax(1) == split.labels).mean())


def per_class_accuracy(model: nn.Module, split: Split, num_classes: int) -> dict[str, float | None]:
    pred = predict(model, split.images).argmax(1)
    out = {}
    for c in range(num_classes):
        sel = split.labels == c
        out[str(c)] = float((pred[sel] == c).mean()) if sel.any() else None
    return out


def train(
    splits: dict[str, Split], num_classes: int, cfg: TrainConfig
) -> tuple[nn.Sequential, dict]:
    """Train and return (best-on-validation model, metrics)."""
    torch.set_num_threads(max(1, cfg.threads))
    seed_everything(cfg.seed)
    start = time.perf_counter()
    train_split = splits["train"]
    in_channels = train_split.images.shape[1]
    model = models.build(cfg.architecture, in_channels, num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    x_all = torch.from_numpy(train_split.images)
    y_all = torch.from_numpy(train_split.labels)
    best_val, best_state, best_epoch = -1.0, None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(x_all), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb = augment(x_all[idx], cfg, gen)
            if cfg.adversarial:
                xb = pgd(model, xb, y_all[idx], cfg, gen)
            loss = loss_fn(model(xb), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        val_acc = accuracy(model, splits["val"])
        improved = val_acc > best_val
        if improved:
            best_val, best_state, best_epoch = val_acc, copy.deepcopy(model.state_dict()), epoch
        log.info(
            "epoch %d/%d loss %.4f val_acc %.4f%s",
            epoch,
            cfg.epochs,
            total / max(count, 1),
            val_acc,
            " (best)" if improved else "",
        )
    model.load_state_dict(best_state)
    model.eval()
    metrics = {
        "architecture": cfg.architecture,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "epochs": cfg.epochs,
        "best_epoch": best_epoch,
        "seed": cfg.seed,
        "train_accuracy": accuracy(model, splits["train"]),
        "val_accuracy": accuracy(model, splits["val"]),
        "test_accuracy": accuracy(model, splits["test"]),
        "test_per_class_accuracy": per_class_accuracy(model, splits["test"], num_classes),
        "augmentation": {
            "brightness": cfg.brightness,
            "contrast": cfg.contrast,
            "noise_sigma": cfg.noise_sigma,
        },
        "adversarial": cfg.pgd if cfg.adversarial else None,
        "seconds": round(time.perf_counter() - start, 2),
    }
    return model, metrics
