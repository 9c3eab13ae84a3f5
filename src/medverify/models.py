"""Architectures by name: an MLP 784->128->128->C and CNN3 (two convs + linear).

Fully connected nets of other sizes are named ``mlp<width>x<depth>``: ``mlp256x2`` is
784->256->256->C, ``mlp100x5`` has five hidden layers of 100 (``mlp`` is ``mlp128x2``)."""

from __future__ import annotations

import re

import torch
from torch import nn

from .data import SIDE, input_size
from .errors import ConfigError

ARCHITECTURES = ("mlp", "cnn3", "mlp<width>x<depth>")
#: regular expression of every architecture name (for schema checks and wildcards)
ARCHITECTURE_PATTERN = r"mlp|cnn3|mlp[1-9][0-9]*x[1-9][0-9]*"
_MLP_SIZE = re.compile(r"mlp([1-9][0-9]*)x([1-9][0-9]*)")


def mlp(in_channels: int, num_classes: int, hidden: int = 128, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_size(in_channels)
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn3(in_channels: int, num_classes: int) -> nn.Sequential:
    # 28x28 -> 4x14x14 -> 8x7x7 -> C: 1176 ReLUs, small enough for complete verifiers.
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, kernel_size=4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, kernel_size=4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * (SIDE // 4) ** 2, num_classes),
    )


def build(name: str, in_channels: int, num_classes: int) -> nn.Sequential:
    if name == "mlp":
        return mlp(in_channels, num_classes)
    if name == "cnn3":
        return cnn3(in_channels, num_classes)
    sized = _MLP_SIZE.fullmatch(name)
    if sized:
        return mlp(in_channels, num_classes, int(sized.group(1)), int(sized.group(2)))
    raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(ARCHITECTURES)}")


def save(model: nn.Sequential, path, meta: dict) -> None:
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)


def load(path) -> tuple[nn.Sequential, dict]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    meta = blob["meta"]
    model = build(meta["architecture"], meta["in_channels"], meta["num_classes"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, meta
