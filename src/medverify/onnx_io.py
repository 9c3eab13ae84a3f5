"""ONNX export (our own graph builder: single file, batch 1, Marabou-friendly ops),
onnxruntime parity checks, and loading any piecewise-linear feed-forward ONNX classifier
(ours or a published one) back into canonical form (docs/external-models.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError, ModelError
from .fileio import atomic_path, digest
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
    with atomic_path(path) as tmp:
        onnx.save_model(model, tmp, save_as_external_data=False)


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


# ---------------------------------------------------------------------------------------
# Loading a published classifier into canonical form.
#
# The graph is walked once in topological order. Every tensor is either a constant (a
# numpy array) or an affine function of the current layer's input (``_Lin``: rows ``w``,
# offset ``b``, ONNX shape ``shape``, and the index of the layer it belongs to). Linear
# operators fold into the pending affine map; a Relu closes a layer. Pure data movement
# (Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Slice, Gather, Expand) is computed by
# running the operator on a tensor of element indices, so it has one implementation.

#: operators load_affine understands (anything else is a one-line ModelError)
LINEAR_OPS = (
    "Gemm MatMul Conv BatchNormalization Add Sub Mul Div Neg AveragePool GlobalAveragePool"
).split()
MOVEMENT_OPS = "Transpose Reshape Flatten Squeeze Unsqueeze Slice Gather Expand".split()
PASS_OPS = ("Identity", "Dropout", "Cast")
SUPPORTED_OPS = tuple(LINEAR_OPS + MOVEMENT_OPS + list(PASS_OPS) + ["Relu", "Constant"])
#: largest dense matrix (entries) a Conv/pool may expand to (float64: 8 bytes each)
MAX_DENSE_ENTRIES = 60_000_000


@dataclass
class _Lin:
    w: np.ndarray | None  # (size, layer inputs); None = identity
    b: np.ndarray  # (size,)
    shape: tuple[int, ...]
    layer: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def rows(self) -> np.ndarray:
        return np.eye(self.size) if self.w is None else self.w

    def take(self, idx: np.ndarray, shape) -> _Lin:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        w = np.eye(self.size)[idx] if self.w is None else self.w[idx]
        return _Lin(w, self.b[idx], tuple(int(d) for d in shape), self.layer)

    def then(self, mat: np.ndarray, offset, shape) -> _Lin:
        """``y = mat @ x + offset`` applied to this tensor's flattened values."""
        w = mat if self.w is None else mat @ self.w
        return _Lin(w, mat @ self.b + offset, tuple(int(d) for d in shape), self.layer)

    def scaled(self, scale: np.ndarray, offset: np.ndarray) -> _Lin:
        """Elementwise ``scale * x + offset`` (both already flattened to this size)."""
        w = np.diag(scale) if self.w is None else self.w * scale[:, None]
        return _Lin(w, self.b * scale + offset, self.shape, self.layer)


class _Graph:
    """State of one load_affine walk; ``fail`` builds the one-line error."""

    def __init__(self, model, path):
        from onnx import numpy_helper

        self.model, self.path = model, str(path)
        self.values: dict[str, object] = {
            t.name: numpy_helper.to_array(t) for t in model.graph.initializer
        }
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        self.node = None

    def fail(self, what: str):
        node = self.node
        where = f"node {node.name or '(unnamed)'!r} ({node.op_type})" if node is not None else ""
        raise ModelError(f"{self.path}: {where + ': ' if where else ''}{what}")

    def get(self, name: str):
        if name not in self.values:
            self.fail(f"input {name!r} is neither a graph input, an initializer nor computed")
        return self.values[name]

    def const(self, name: str) -> np.ndarray:
        value = self.get(name)
        if isinstance(value, _Lin):
            self.fail(f"needs a constant for input {name!r}, got a tensor computed from the image")
        return value

    def lin(self, name: str, current: int) -> _Lin:
        value = self.get(name)
        if value.layer != current:
            self.fail(
                f"reads {name!r} from before the last Relu: not a feed-forward chain "
                "(skip connections are not supported)"
            )
        return value


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _evaluate(g: _Graph, node, inputs: list) -> list[np.ndarray]:
    """Run one node on numpy inputs with onnx's reference evaluator (constants and index
    tensors only: never on the network's weights times images)."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    copy = helper.make_node(
        node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain
    )
    copy.attribute.extend(node.attribute)
    feeds = {n: np.asarray(v) for n, v in zip(names, inputs, strict=True) if n}
    graph = helper.make_graph(
        [copy],
        "fold",
        [
            helper.make_tensor_value_info(
                n, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)
            )
            for n, v in feeds.items()
        ],
        [helper.make_value_info(o, onnx.TypeProto()) for o in copy.output],
    )
    model = helper.make_model(graph, opset_imports=list(g.model.opset_import))
    try:
        return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, feeds)]
    except Exception as exc:  # noqa: BLE001 - reported as a one-line error on the node
        g.fail(f"cannot evaluate: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def _window_matrix(g, weight, in_shape, attrs, group=1):
    """Dense matrix of a 2-D convolution (also used for average pooling) over a (C, H, W)
    tensor: returns (matrix, (OC, OH, OW))."""
    c, h, w = in_shape
    oc, icg, kh, kw = weight.shape
    if c != icg * group or oc % group:
        g.fail(f"weight {weight.shape} with group {group} does not fit input channels {c}")
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in ((h, kh, sh, dh), (w, kw, sw, dw)):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
        pt, pb, pl, pr = pads[0][0], pads[0][1], pads[1][0], pads[1][1]
    elif auto_pad in ("NOTSET", "VALID"):
        pt, pl, pb, pr = attrs.get("pads", [0, 0, 0, 0]) if auto_pad == "NOTSET" else [0] * 4
    else:
        g.fail(f"unknown auto_pad {auto_pad!r}")
    if attrs.get("ceil_mode", 0):
        g.fail("ceil_mode=1 is not supported")
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    if oh < 1 or ow < 1:
        g.fail(f"kernel {kh}x{kw} does not fit the {h}x{w} input")
    if oc * oh * ow * c * h * w > MAX_DENSE_ENTRIES:
        g.fail(
            f"expands to a {oc * oh * ow}x{c * h * w} dense matrix, more than "
            f"{MAX_DENSE_ENTRIES} entries: too large for the dense canonical form"
        )
    mat = np.zeros((oc, oh, ow, c, h, w))
    ocg = oc // group
    for grp in range(group):
        o_sl, i_sl = slice(grp * ocg, (grp + 1) * ocg), slice(grp * icg, (grp + 1) * icg)
        for i in range(oh):
            for j in range(ow):
                for a in range(kh):
                    y = i * sh - pt + a * dh
                    if not 0 <= y < h:
                        continue
                    for bb in range(kw):
                        x = j * sw - pl + bb * dw
                        if 0 <= x < w:
                            mat[o_sl, i, j, i_sl, y, x] = weight[o_sl, :, a, bb]
    return mat.reshape(oc * oh * ow, c * h * w), (oc, oh, ow)


def _image_shape(g: _Graph, t: _Lin) -> tuple[int, int, int]:
    if len(t.shape) != 4 or t.shape[0] != 1:
        g.fail(f"needs a (1, C, H, W) tensor, got shape {t.shape}")
    return t.shape[1:]


def _elementwise(g: _Graph, op: str, a, b, cur: int):
    """Add/Sub/Mul/Div with at least one operand computed from the image."""
    if isinstance(a, _Lin) and isinstance(b, _Lin):
        if op not in ("Add", "Sub"):
            g.fail(f"{op} of two image-dependent tensors is not piecewise linear")
        for t in (a, b):
            if t.layer != cur:
                g.fail("reads a tensor from before the last Relu: not a feed-forward chain")
        out_shape = np.broadcast_shapes(a.shape, b.shape)
        sign = 1.0 if op == "Add" else -1.0
        ea = a.take(np.broadcast_to(np.arange(a.size).reshape(a.shape), out_shape), out_shape)
        eb = b.take(np.broadcast_to(np.arange(b.size).reshape(b.shape), out_shape), out_shape)
        return _Lin(ea.rows() + sign * eb.rows(), ea.b + sign * eb.b, out_shape, cur)
    lin_first = isinstance(a, _Lin)
    t, c = (a, b) if lin_first else (b, a)
    if t.layer != cur:
        g.fail("reads a tensor from before the last Relu: not a feed-forward chain")
    c = np.asarray(c, dtype=np.float64)
    out_shape = np.broadcast_shapes(t.shape, c.shape)
    if out_shape != t.shape:
        t = t.take(np.broadcast_to(np.arange(t.size).reshape(t.shape), out_shape), out_shape)
    c = np.broadcast_to(c, out_shape).reshape(-1)
    ones, zeros = np.ones(t.size), np.zeros(t.size)
    if op == "Add":
        return t.scaled(ones, c)
    if op == "Sub":
        return t.scaled(ones, -c) if lin_first else t.scaled(-ones, c)
    if op == "Mul":
        return t.scaled(c, zeros)
    if not lin_first:
        g.fail("division by an image-dependent tensor is not piecewise linear")
    if np.any(c == 0):
        g.fail("division by a constant that contains 0")
    return t.scaled(1.0 / c, zeros)


def _linear_node(g: _Graph, node, attrs: dict, cur: int) -> _Lin:
    op = node.op_type
    if op == "Gemm":
        a = g.lin(node.input[0], cur)
        bmat = np.asarray(g.const(node.input[1]), np.float64)
        if len(a.shape) != 2:
            g.fail(f"input A has shape {a.shape}, Gemm needs 2-D")
        if attrs.get("transA", 0):
            a = a.take(np.arange(a.size).reshape(a.shape).T, a.shape[::-1])
        if attrs.get("transB", 0):
            bmat = bmat.T
        rows, k = a.shape
        if bmat.shape[0] != k:
            g.fail(f"B has shape {bmat.shape}, input has {k} columns")
        m = bmat.shape[1]
        mat = np.kron(np.eye(rows), attrs.get("alpha", 1.0) * bmat.T)
        offset = np.zeros(rows * m)
        if len(node.input) > 2 and node.input[2]:
            c = np.asarray(g.const(node.input[2]), np.float64)
            offset = attrs.get("beta", 1.0) * np.broadcast_to(c, (rows, m)).reshape(-1)
        return a.then(mat, offset, (rows, m))
    if op == "MatMul":
        x, y = g.get(node.input[0]), g.get(node.input[1])
        if isinstance(x, _Lin) and not isinstance(y, _Lin):
            wmat = np.asarray(y, np.float64)
            g.lin(node.input[0], cur)
            if wmat.ndim != 2 or not x.shape or x.shape[-1] != wmat.shape[0]:
                g.fail(f"cannot multiply shape {x.shape} by constant {wmat.shape}")
            rows = x.size // x.shape[-1]
            mat = np.kron(np.eye(rows), wmat.T)
            return x.then(mat, 0.0, (*x.shape[:-1], wmat.shape[1]))
        if isinstance(y, _Lin) and not isinstance(x, _Lin):
            amat = np.asarray(x, np.float64)
            g.lin(node.input[1], cur)
            if amat.ndim != 2 or len(y.shape) != 2 or amat.shape[1] != y.shape[0]:
                g.fail(f"cannot multiply constant {amat.shape} by shape {y.shape}")
            mat = np.kron(amat, np.eye(y.shape[1]))
            return y.then(mat, 0.0, (amat.shape[0], y.shape[1]))
        g.fail("MatMul needs exactly one constant operand")
    if op in ("Add", "Sub", "Mul", "Div"):
        return _elementwise(g, op, g.get(node.input[0]), g.get(node.input[1]), cur)
    if op == "Neg":
        x = g.lin(node.input[0], cur)
        return x.scaled(-np.ones(x.size), np.zeros(x.size))
    if op == "BatchNormalization":
        x = g.lin(node.input[0], cur)
        gamma, beta, mean, var = (np.asarray(g.const(n), np.float64) for n in node.input[1:5])
        if attrs.get("training_mode", 0):
            g.fail("training_mode=1: export the model in inference mode")
        scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
        shape = (1, -1) + (1,) * (len(x.shape) - 2)
        scale_b = np.broadcast_to(scale.reshape(shape), x.shape).reshape(-1)
        shift = np.broadcast_to((beta - mean * scale).reshape(shape), x.shape).reshape(-1)
        return x.scaled(scale_b, shift)
    if op == "Conv":
        x = g.lin(node.input[0], cur)
        weight = np.asarray(g.const(node.input[1]), np.float64)
        if weight.ndim != 4:
            g.fail(f"only 2-D convolutions are supported (weight shape {weight.shape})")
        mat, out = _window_matrix(g, weight, _image_shape(g, x), attrs, attrs.get("group", 1))
        bias = np.zeros(out[0])
        if len(node.input) > 2 and node.input[2]:
            bias = np.asarray(g.const(node.input[2]), np.float64)
        return x.then(mat, np.repeat(bias, out[1] * out[2]), (1, *out))
    if op in ("AveragePool", "GlobalAveragePool"):
        x = g.lin(node.input[0], cur)
        c, h, w = _image_shape(g, x)
        if op == "GlobalAveragePool":
            attrs = {"kernel_shape": [h, w]}
        kh, kw = attrs["kernel_shape"]
        ones = np.zeros((c, 1, kh, kw))
        ones[:] = 1.0
        mat, out = _window_matrix(g, ones, (c, h, w), attrs, group=c)
        if attrs.get("count_include_pad", 0):
            mat = mat / (kh * kw)
        else:
            mat = mat / mat.sum(axis=1, keepdims=True)
        return x.then(mat, 0.0, (1, *out))
    raise AssertionError(op)  # pragma: no cover


def _input_of(model, path) -> tuple[str, tuple, int]:
    """(name, shape with free dimensions as None, element dtype) of the one image input."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(
            f"{path}: expected one image input, found {len(inputs)} "
            f"({', '.join(i.name for i in inputs) or 'none'})"
        )
    tt = inputs[0].type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    if any(d is None for d in shape[1:]):
        raise ModelError(
            f"{path}: input {inputs[0].name!r} has shape {shape} with a free dimension other "
            "than the batch: give it a fixed shape"
        )
    return inputs[0].name, shape, tt.elem_type


def _layout_permutation(shape: tuple) -> np.ndarray | None:
    """Index map from our (C, H, W) flattened image to the model's flattened input when
    the model takes channels last, (H, W, C) with C = 3; None when the orders agree."""
    dims = tuple(d or 1 for d in shape)
    if len(dims) == 4 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 3 and dims[2] == 3 and dims[0] != 3:
        h, w, c = dims
        return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return None


def read_model(path: str | os.PathLike):
    """onnx.load with a one-line error naming the file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX file {path} not found")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{path} is not an ONNX model ({first})") from None


def input_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """Shape of one input (without the batch dimension)."""
    _, shape, _ = _input_of(read_model(path), path)
    return tuple(int(d or 1) for d in shape[1:])


def input_size(path: str | os.PathLike) -> int:
    """Number of values in one input image."""
    return int(np.prod(input_shape(path), dtype=np.int64))


def check_input_size(path: str | os.PathLike, size: int, what: str = "the images") -> None:
    """One-line ModelError when the classifier does not take ``size`` values."""
    got = input_size(path)
    if got != int(size):
        raise ModelError(
            f"{path}: the classifier takes {got} input values (shape {input_shape(path)}), "
            f"{what} have {int(size)}"
        )


def load_affine(
    path: str | os.PathLike, input_size: int | None = None, what: str = "the images"
) -> AffineNet:
    """Read a piecewise-linear feed-forward classifier into canonical form over our
    flattened (C, H, W) image: affine layers with ReLU between them. See SUPPORTED_OPS;
    a trailing Softmax/LogSoftmax is dropped (it keeps the order of the outputs, which is
    all a robustness property asks about). ``input_size`` (the dataset image's number
    of values) is checked when given; ``what`` names them in the error."""
    model = read_model(path)
    g = _Graph(model, path)
    name, shape, _ = _input_of(model, path)
    shape = tuple(int(d or 1) for d in shape)
    n = int(np.prod(shape, dtype=np.int64))
    if input_size is not None and n != int(input_size):
        raise ModelError(
            f"{path}: the classifier takes {n} input values (shape {shape}), "
            f"{what} have {int(input_size)}"
        )
    perm = _layout_permutation(shape)
    g.values[name] = _Lin(None, np.zeros(n), shape, 0)
    if perm is not None:
        g.values[name] = _Lin(np.eye(n)[perm], np.zeros(n), shape, 0)
    out_name = model.graph.output[0].name
    cur = 0
    nodes = list(model.graph.node)
    for pos, node in enumerate(nodes):
        g.node = node
        op, attrs = node.op_type, _attrs(node)
        if node.domain not in ("", "ai.onnx"):
            g.fail(f"operator from domain {node.domain!r} is not supported")
        if op == "Constant":
            from onnx import numpy_helper

            key, value = next(iter(attrs.items()))
            value = numpy_helper.to_array(value) if key in ("value", "sparse_value") else value
            g.values[node.output[0]] = np.asarray(value)
            continue
        present = [i for i in node.input if i]
        inputs = [g.get(i) for i in present]
        if not any(isinstance(v, _Lin) for v in inputs):  # constant folding
            outs = _evaluate(g, node, [g.get(i) if i else None for i in node.input])
            g.values.update(zip(node.output, outs, strict=False))
            continue
        if op in ("Softmax", "LogSoftmax") and pos == len(nodes) - 1:
            if node.output[0] != out_name:
                g.fail("a Softmax is accepted only as the last node, producing the output")
            g.values[node.output[0]] = g.lin(node.input[0], cur)
            continue
        if op == "Shape":
            x = g.get(node.input[0])
            start, end = attrs.get("start", 0), attrs.get("end", None)
            g.values[node.output[0]] = np.array(x.shape[start:end], dtype=np.int64)
            continue
        if op in PASS_OPS:
            if op == "Cast" and attrs.get("to") not in (1, 10, 11):
                g.fail(f"Cast of an image-dependent tensor to type {attrs.get('to')}")
            g.values[node.output[0]] = g.lin(node.input[0], cur)
            continue
        if op == "Relu":
            x = g.lin(node.input[0], cur)
            g.layers.append((x.rows(), x.b))
            cur += 1
            g.values[node.output[0]] = _Lin(None, np.zeros(x.size), x.shape, cur)
            continue
        if op in MOVEMENT_OPS:
            x = g.lin(node.input[0], cur)
            if any(isinstance(v, _Lin) for v in inputs[1:]):
                g.fail("only the data input may depend on the image")
            index = np.arange(x.size, dtype=np.int64).reshape(x.shape)
            args = [index] + [g.get(i) if i else None for i in node.input[1:]]
            out = _evaluate(g, node, args)[0]
            g.values[node.output[0]] = x.take(out, out.shape)
            continue
        if op in LINEAR_OPS:
            g.values[node.output[0]] = _linear_node(g, node, attrs, cur)
            continue
        g.fail(f"unsupported operator {op} (supported: {', '.join(SUPPORTED_OPS)})")
    g.node = None
    out = g.get(out_name)
    if not isinstance(out, _Lin):
        g.fail(f"output {out_name!r} does not depend on the input")
    if out.layer != cur:
        g.fail(f"output {out_name!r} is not computed from the last layer")
    g.layers.append((out.rows(), out.b))
    return AffineNet(g.layers)


class LazyOrt:
    """An :class:`OrtClassifier` opened on first use. A verify job needs onnxruntime only
    to replay a counterexample; most jobs end robust and skip its import and session
    (~0.07 CPU s of a ~0.5 s job)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._classifier = None

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if self._classifier is None:
            self._classifier = OrtClassifier(self.path)
        return getattr(self._classifier, name)


class OrtClassifier:
    """onnxruntime session for a classifier; ``logits`` takes images as (N, C, H, W) or
    flattened (N, C*H*W) / (C*H*W,) in our layout and feeds them in the model's input shape
    and order (channels last when the model asks for it, see load_affine)."""

    def __init__(self, path: str | os.PathLike):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"ONNX file {path} not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several kinds
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"{path}: onnxruntime cannot load it ({first})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = np.float64 if inp.type == "tensor(double)" else np.float32
        shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        if any(d is None for d in shape[1:]):
            raise ModelError(
                f"{path}: input shape {tuple(inp.shape)} has a free non-batch dimension"
            )
        self.free_batch = bool(shape) and shape[0] is None
        self.shape = tuple(int(d or 1) for d in shape)  # one image, batch dimension included
        self.input_shape = self.shape[1:]
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.perm = _layout_permutation(shape)

    def logits(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        flat = (
            images.reshape(1, -1) if images.size == self.size else images.reshape(len(images), -1)
        )
        if flat.shape[1] != self.size:
            raise ModelError(
                f"{self.path}: the classifier takes {self.size} input values (shape "
                f"{self.shape}), got images of {flat.shape[1]}"
            )
        if self.perm is not None:
            flat = flat[:, self.perm]
        flat = flat.astype(self.dtype)
        if self.free_batch:
            return np.asarray(
                self.session.run(None, {self.input_name: flat.reshape(-1, *self.shape[1:])})[0]
            ).reshape(len(flat), -1)
        return np.concatenate(
            [
                np.asarray(
                    self.session.run(None, {self.input_name: row.reshape(self.shape)})[0]
                ).reshape(1, -1)
                for row in flat
            ]
        )


def parity(model, path: str | os.PathLike, images: np.ndarray) -> tuple[float, float]:
    """Largest absolute logit difference between torch and onnxruntime, and the logit
    scale it is judged against (the largest |logit|, at least 1)."""
    import torch

    with torch.no_grad():
        ref = model(torch.from_numpy(np.asarray(images, np.float32))).numpy()
    got = OrtClassifier(path).logits(images)
    return float(np.max(np.abs(ref - got))), max(1.0, float(np.max(np.abs(ref))))


def export_checked(model, images: np.ndarray, path, tol: float = 1e-5) -> float:
    """Export and fail if the onnxruntime logits differ from torch's by more than ``tol``
    times the logit scale (float32 round-off grows with the logits: a 10-class MNIST net
    with logits near 15 differs by ~1e-5 where a PneumoniaMNIST net differs by ~3e-6).
    Returns the largest absolute difference."""
    if len(images) < 1:
        raise ExportError("parity check needs at least one image")
    export_torch(model, tuple(images.shape[1:]), path)
    diff, scale = parity(model, path, images)
    if not diff <= tol * scale:
        Path(path).unlink(missing_ok=True)
        raise ExportError(
            f"ONNX parity check failed for {path}: max logit diff {diff:.3g} > "
            f"{tol} x logit scale {scale:.3g}"
        )
    return diff


def sha256(path: str | os.PathLike) -> str:
    return digest(path, "sha256")
