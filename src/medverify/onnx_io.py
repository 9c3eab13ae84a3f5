"""ONNX export (our own graph builder: single file, batch 1, Marabou-friendly ops),
onnxruntime parity checks, and loading an ONNX classifier back into canonical form."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ExportError
from .nets import AffineNet

OPSET = 13
INPUT = "input"
OUTPUT = "logits"


def _tensor(name, arr):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name)


def _save(graph, path) -> None:
    import onnx

    model = onnx.helper.make_model(
        graph,
        producer_name="medverify",
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = f"{path}.tmp"
    onnx.save_model(model, tmp, save_as_external_data=False)
    os.replace(tmp, path)


def export_torch(model, input_shape: tuple[int, ...], path: str | os.PathLike) -> None:
    """Export an nn.Sequential of Conv2d/Linear/ReLU/Flatten as single-file ONNX with
    input ``input`` of shape (1, *input_shape) and output ``logits``."""
    from onnx import TensorProto, helper
    from torch import nn

    nodes, inits = [], []
    cur = INPUT
    for i, layer in enumerate(model):
        out = f"t{i}"
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.dilation != (1, 1):
                raise ExportError(f"unsupported Conv2d settings in layer {i}: {layer}")
            w, b = f"conv{i}.weight", f"conv{i}.bias"
            inits += [_tensor(w, layer.weight.detach().numpy())]
            inputs = [cur, w]
            if layer.bias is not None:
                inits.append(_tensor(b, layer.bias.detach().numpy()))
                inputs.append(b)
            ph, pw = layer.padding
            nodes.append(
                helper.make_node(
                    "Conv",
                    inputs,
                    [out],
                    kernel_shape=list(layer.kernel_size),
                    strides=list(layer.stride),
                    pads=[ph, pw, ph, pw],
                )
            )
        elif isinstance(layer, nn.Linear):
            w, b = f"fc{i}.weight", f"fc{i}.bias"
            inits += [
                _tensor(w, layer.weight.detach().numpy()),
                _tensor(b, layer.bias.detach().numpy()),
            ]
            nodes.append(helper.make_node("Gemm", [cur, w, b], [out], transB=1))
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [cur], [out]))
        elif isinstance(layer, nn.Flatten):
            nodes.append(helper.make_node("Flatten", [cur], [out], axis=1))
        else:
            raise ExportError(f"cannot export layer {i} of type {type(layer).__name__}")
        cur = out
    nodes[-1].output[0] = OUTPUT
    num_out = [m for m in model if isinstance(m, nn.Linear)][-1].out_features
    graph = helper.make_graph(
        nodes,
        "medverify_classifier",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, *input_shape])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, num_out])],
        initializer=inits,
    )
    _save(graph, path)


def export_affine(net: AffineNet, path: str | os.PathLike) -> None:
    """Write a canonical AffineNet as ONNX (Gemm/Relu), input (1, n) -> output (1, m)."""
    from onnx import TensorProto, helper

    nodes, inits = [], []
    cur = INPUT
    for i, (w, b) in enumerate(net.layers):
        inits += [_tensor(f"w{i}", w), _tensor(f"b{i}", b)]
        out = OUTPUT if i == len(net.layers) - 1 else f"z{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [out], transB=1))
        if i < len(net.layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i}"]))
            cur = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "medverify_affine",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, net.input_dim])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, net.output_dim])],
        initializer=inits,
    )
    _save(graph, path)


def input_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """Shape of one input (without the batch dimension)."""
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return tuple(int(d.dim_value) for d in dims[1:])


def _conv_dense(weight, bias, attrs, in_shape):
    """Expand a Conv node into a dense matrix (numpy only: the verify parent process must
    not start torch's thread pools before it forks)."""
    weight = np.asarray(weight, np.float64)
    c, h, w = in_shape
    oc, ic, kh, kw = weight.shape
    if ic != c:
        raise ExportError(f"Conv weight expects {ic} channels, tensor has {c}")
    if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ExportError(f"Conv with group/dilation {attrs} is not supported")
    pads = attrs.get("pads", [0, 0, 0, 0])
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise ExportError(f"asymmetric Conv pads {pads} are not supported")
    sh, sw = attrs.get("strides", [1, 1])
    ph, pw = pads[0], pads[1]
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    mat = np.zeros((oc, oh, ow, c, h, w))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                y = i * sh - ph + a
                if not 0 <= y < h:
                    continue
                for b in range(kw):
                    x = j * sw - pw + b
                    if 0 <= x < w:
                        mat[:, i, j, :, y, x] = weight[:, :, a, b]
    mat = mat.reshape(oc * oh * ow, c * h * w)
    bvec = (
        np.zeros(oc * oh * ow) if bias is None else np.repeat(np.asarray(bias, np.float64), oh * ow)
    )
    return mat, bvec, (oc, oh, ow)


def load_affine(path: str | os.PathLike) -> AffineNet:
    """Read a feed-forward ReLU classifier (Conv/Gemm/MatMul/Add/Relu/Flatten/Reshape)
    into canonical form over the flattened input."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    shape = input_shape(path)
    n = int(np.prod(shape))
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    cur_w, cur_b = np.eye(n), np.zeros(n)  # pending affine map since the last ReLU
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "Conv":
            if len(shape) != 3:
                raise ExportError(f"Conv node {node.name!r} on a non-image tensor of shape {shape}")
            bias = inits.get(node.input[2]) if len(node.input) > 2 else None
            mat, b, shape = _conv_dense(inits[node.input[1]], bias, attrs, shape)
            cur_w, cur_b = mat @ cur_w, mat @ cur_b + b
        elif op == "Gemm":
            w = inits[node.input[1]]
            if attrs.get("transB", 0):
                w = w.T
            if attrs.get("transA", 0):
                raise ExportError(f"Gemm node {node.name!r} with transA is not supported")
            w = w.T * attrs.get("alpha", 1.0)
            b = inits[node.input[2]] * attrs.get("beta", 1.0) if len(node.input) > 2 else 0.0
            cur_w, cur_b = w @ cur_w, w @ cur_b + b
            shape = (w.shape[0],)
        elif op == "MatMul":
            w = inits[node.input[1]].T
            cur_w, cur_b = w @ cur_w, w @ cur_b
            shape = (w.shape[0],)
        elif op in ("Add", "Sub"):
            const = inits.get(node.input[1])
            if const is None:
                raise ExportError(f"{op} node {node.name!r} without a constant operand")
            sign = 1.0 if op == "Add" else -1.0
            cur_b = cur_b + sign * np.broadcast_to(const.reshape(-1), cur_b.shape)
        elif op == "Relu":
            layers.append((cur_w, cur_b))
            m = cur_w.shape[0]
            cur_w, cur_b = np.eye(m), np.zeros(m)
        elif op in ("Flatten", "Reshape", "Identity"):
            shape = (int(np.prod(shape)),)
        else:
            raise ExportError(f"unsupported ONNX op {op!r} in {path}")
    layers.append((cur_w, cur_b))
    return AffineNet(layers)


class OrtClassifier:
    """onnxruntime session for a batch-1 classifier; ``logits`` takes (N, ...) images."""

    def __init__(self, path: str | os.PathLike):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(self.session.get_inputs()[0].shape[1:])

    def logits(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32).reshape((-1, *self.input_shape))
        return np.concatenate(
            [self.session.run(None, {self.input_name: img[None]})[0] for img in images]
        )


def parity(model, path: str | os.PathLike, images: np.ndarray) -> float:
    """Largest absolute logit difference between torch and onnxruntime."""
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(np.asarray(images, np.float32))).numpy()
    got = OrtClassifier(path).logits(images)
    return float(np.max(np.abs(ref - got)))


def export_checked(model, images: np.ndarray, path, tol: float = 1e-5) -> float:
    """Export and fail if the onnxruntime logits differ from torch's by more than tol."""
    if len(images) < 1:
        raise ExportError("parity check needs at least one image")
    export_torch(model, tuple(images.shape[1:]), path)
    diff = parity(model, path, images)
    if not diff <= tol:
        Path(path).unlink(missing_ok=True)
        raise ExportError(f"ONNX parity check failed for {path}: max logit diff {diff:.3g} > {tol}")
    return diff


def sha256(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
