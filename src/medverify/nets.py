"""A piecewise-linear network in canonical form: affine layers with ReLU between them.

Every backend works on this form. Convolutions are expanded to dense matrices (the
networks here are small), and a perturbation family's prefix (parameters -> image, with
clip written as relu(z) - relu(z - 1)) is composed in front, so a structured family is a
plain box over a few inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AffineNet:
    """``x -> W_L relu(... relu(W_1 x + b_1) ...) + b_L`` in float64."""

    layers: list[tuple[np.ndarray, np.ndarray]]

    def __post_init__(self):
        self.layers = [
            (np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
            for w, b in self.layers
        ]
        for i in range(1, len(self.layers)):
            if self.layers[i][0].shape[1] != self.layers[i - 1][0].shape[0]:
                raise ValueError(
                    f"layer {i} expects {self.layers[i][0].shape[1]} inputs but layer {i - 1} "
                    f"gives {self.layers[i - 1][0].shape[0]}"
                )

    @property
    def input_dim(self) -> int:
        return self.layers[0][0].shape[1]

    @property
    def output_dim(self) -> int:
        return self.layers[-1][0].shape[0]

    @property
    def relu_count(self) -> int:
        return sum(w.shape[0] for w, _ in self.layers[:-1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: (n,) or (batch, n) -> logits of the same leading shape."""
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1
        h = x[None] if single else x
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h[0] if single else h

    def pre_activations(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-ReLU values of each hidden layer for one input (n,)."""
        h = np.asarray(x, dtype=np.float64)
        out = []
        for w, b in self.layers[:-1]:
            z = w @ h + b
            out.append(z)
            h = np.maximum(z, 0.0)
        return out

    def with_output_map(self, c: np.ndarray, d: np.ndarray | None = None) -> AffineNet:
        """Fold a linear map ``y -> c y + d`` into the last layer."""
        w, b = self.layers[-1]
        c = np.asarray(c, dtype=np.float64)
        d = np.zeros(c.shape[0]) if d is None else np.asarray(d, dtype=np.float64)
        return AffineNet(self.layers[:-1] + [(c @ w, c @ b + d)])

    def margin_net(self, label: int, targets) -> AffineNet:
        """Outputs ``f_label - f_j`` for each j in targets (robust iff all > 0)."""
        targets = list(targets)
        c = np.zeros((len(targets), self.output_dim))
        for row, j in enumerate(targets):
            c[row, label] += 1.0
            c[row, j] -= 1.0
        return self.with_output_map(c)

    def prepend(self, w0: np.ndarray, b0: np.ndarray, clip: bool = True) -> AffineNet:
        """Compose ``x = clip(w0 p + b0, 0, 1)`` in front (clip as relu(z) - relu(z - 1))."""
        w0 = np.asarray(w0, dtype=np.float64)
        b0 = np.asarray(b0, dtype=np.float64)
        w1, b1 = self.layers[0]
        if not clip:
            return AffineNet([(w1 @ w0, w1 @ b0 + b1)] + self.layers[1:])
        first = (np.vstack([w0, w0]), np.concatenate([b0, b0 - 1.0]))
        second = (np.hstack([w1, -w1]), b1)
        return AffineNet([first, second] + self.layers[1:])

    def to_torch(self, dtype=None):
        """An equivalent torch nn.Sequential of Linear/ReLU (imports torch lazily)."""
        import torch
        from torch import nn

        dtype = dtype or torch.float32
        mods = []
        for i, (w, b) in enumerate(self.layers):
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(w))
                lin.bias.copy_(torch.as_tensor(b))
            mods.append(lin)
            if i < len(self.layers) - 1:
                mods.append(nn.ReLU())
        return nn.Sequential(*mods).to(dtype).eval()
