"""Export a classifier the way other projects publish them, for trying external models:
input (N, 28, 28, 1) channels last with a free batch dimension, a normalisation layer,
permute and view before the dense layers, through torch.onnx (not our exporter).

    python benchmarks/external_model.py SOURCE.onnx OUT.onnx [--mean M --std S]

SOURCE is any classifier load_affine reads (e.g. a trained results/.../model.onnx); OUT
computes the same function on channels-last input."""

from __future__ import annotations

import argparse
import sys

import torch

from medverify import onnx_io


class Published(torch.nn.Module):
    def __init__(self, seq: torch.nn.Sequential, mean: float, std: float):
        super().__init__()
        first, *rest = list(seq)
        self.mean, self.std = mean, std
        self.first = torch.nn.Linear(first.in_features, first.out_features)
        with torch.no_grad():  # W((x - m)/s * s + m) = (W s) z + (b + W m) with z = (x - m)/s
            self.first.weight.copy_(first.weight * std)
            self.first.bias.copy_(first.bias + first.weight.sum(1) * mean)
        self.rest = torch.nn.Sequential(*rest)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = x.permute(0, 3, 1, 2)
        return self.rest(self.first(x.reshape(x.shape[0], -1)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("source")
    p.add_argument("out")
    p.add_argument("--mean", type=float, default=0.5719)
    p.add_argument("--std", type=float, default=0.1684)
    args = p.parse_args(argv)
    net = onnx_io.load_affine(args.source)
    if net.input_dim != 784:
        raise SystemExit(f"{args.source}: takes {net.input_dim} values, this script wants 784")
    model = Published(net.to_torch(), args.mean, args.std).eval()
    torch.onnx.export(
        model,
        torch.rand(1, 28, 28, 1),
        args.out,
        dynamo=False,
        input_names=["pixels"],
        output_names=["scores"],
        dynamic_axes={"pixels": {0: "batch"}},
    )
    print(f"{args.out}: input (batch, 28, 28, 1), normalisation ({args.mean}, {args.std})")


if __name__ == "__main__":
    from medverify.errors import script_main

    sys.exit(script_main("external_model.py", main))
