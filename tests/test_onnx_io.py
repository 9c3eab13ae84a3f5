import numpy as np
import onnx
import pytest
import torch

from medverify import models, onnx_io
from medverify.errors import ExportError


@pytest.mark.parametrize("arch", ["mlp", "cnn3"])
def test_export_parity_on_100_real_images(arch, pneumonia, tmp_path):
    torch.manual_seed(0)
    m = models.build(arch, 1, 2).eval()
    path = tmp_path / "m.onnx"
    images = pneumonia["test"].images[:100]
    diff = onnx_io.export_checked(m, images, path)
    assert diff <= 1e-5
    model = onnx.load(str(path))
    # single file, batch size 1, no external data
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 1, 28, 28]
    # the canonical form computes the same function
    net = onnx_io.load_affine(path)
    with torch.no_grad():
        ref = m(torch.from_numpy(images[:10])).numpy()
    np.testing.assert_allclose(net.forward(images[:10].reshape(10, -1)), ref, atol=1e-5)


def test_export_rejects_unknown_layers(tmp_path):
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2), torch.nn.Sigmoid())
    with pytest.raises(ExportError, match="Sigmoid"):
        onnx_io.export_torch(m, (1, 28, 28), tmp_path / "x.onnx")


def test_parity_failure_deletes_file(tmp_path, monkeypatch):
    m = models.build("mlp", 1, 2).eval()
    images = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    with pytest.raises(ExportError, match="parity check failed"):
        onnx_io.export_checked(m, images, tmp_path / "m.onnx", tol=-1.0)
    assert not (tmp_path / "m.onnx").exists()


def test_parity_is_judged_against_the_logit_scale(tmp_path):
    m = models.build("mlp", 1, 10).eval()
    with torch.no_grad():
        m[-1].weight.mul_(2000.0)  # logits in the hundreds: float32 round-off grows with them
    images = np.random.default_rng(0).random((20, 1, 28, 28), dtype=np.float32)
    diff = onnx_io.export_checked(m, images, tmp_path / "m.onnx")
    got, scale = onnx_io.parity(m, tmp_path / "m.onnx", images)
    assert got == diff and scale > 100 and diff <= 1e-5 * scale


def test_export_affine_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    from medverify.nets import AffineNet

    net = AffineNet(
        [
            (rng.normal(size=(5, 3)), rng.normal(size=5)),
            (rng.normal(size=(2, 5)), rng.normal(size=2)),
        ]
    )
    onnx_io.export_affine(net, tmp_path / "a.onnx")
    back = onnx_io.load_affine(tmp_path / "a.onnx")
    x = rng.uniform(size=(7, 3))
    np.testing.assert_allclose(back.forward(x), net.forward(x), atol=1e-6)
    ort = onnx_io.OrtClassifier(tmp_path / "a.onnx")
    np.testing.assert_allclose(ort.logits(x), net.forward(x), atol=1e-5)


# --- published-style graphs: load_affine must agree with onnxruntime ----------------------

from onnx import TensorProto, helper  # noqa: E402

from medverify.errors import ModelError  # noqa: E402

IMAGE_SHAPES = [
    (1, 784),
    (1, 784, 1),
    (1, 1, 28, 28),
    (1, 28, 28),
    (1, 28, 28, 1),
    ("N", 1, 28, 28),
]


def _init(name, arr, dtype=np.float32):
    return onnx.numpy_helper.from_array(np.asarray(arr, dtype=dtype), name)


def _save_model(nodes, inits, in_shape, out_shape, path, opset=13):
    graph = helper.make_graph(
        nodes,
        "published",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, list(out_shape))],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def published_style(
    path, in_shape, channels=1, classes=10, seed=0, channels_last=False, softmax=False
):
    """Normalisation (Sub/Div), Conv with padding, BatchNorm, Relu, AveragePool, Transpose,
    Reshape, MatMul + Add, Mul, Identity, Constant, Flatten, Gemm (and a trailing Softmax
    when asked)."""
    rng = np.random.default_rng(seed)
    c = channels
    nodes = [
        helper.make_node(
            "Constant",
            [],
            ["to_nchw"],
            value=_init("v", [-1, 28, 28, c] if channels_last else [-1, c, 28, 28], np.int64),
        ),
        helper.make_node("Reshape", ["image", "to_nchw"], ["x0"]),
    ]
    if channels_last:
        nodes.append(helper.make_node("Transpose", ["x0"], ["x0t"], perm=[0, 3, 1, 2]))
    else:
        nodes.append(helper.make_node("Identity", ["x0"], ["x0t"]))
    nodes += [
        helper.make_node("Sub", ["x0t", "mean"], ["x1"]),
        helper.make_node("Div", ["x1", "std"], ["x2"]),
        helper.make_node(
            "Conv",
            ["x2", "cw", "cb"],
            ["x3"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
        ),
        helper.make_node(
            "BatchNormalization", ["x3", "g", "beta", "mu", "var"], ["x4"], epsilon=1e-3
        ),
        helper.make_node("Relu", ["x4"], ["x5"]),
        helper.make_node("AveragePool", ["x5"], ["x6"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["x6", "cw2"], ["x6b"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Transpose", ["x6b"], ["x7"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["x7", "flat"], ["x8"]),
        helper.make_node("MatMul", ["x8", "mw"], ["x9"]),
        helper.make_node("Add", ["x9", "mb"], ["x10"]),
        helper.make_node("Mul", ["x10", "half"], ["x11"]),
        helper.make_node("Relu", ["x11"], ["x12"]),
        helper.make_node("Flatten", ["x12"], ["x13"], axis=1),
        helper.make_node(
            "Gemm", ["x13", "gw", "gb"], ["logits" if softmax else "probs"], transB=1, alpha=0.9
        ),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    inits = [
        _init("mean", rng.uniform(0.3, 0.6, size=(1, c, 1, 1))),
        _init("std", rng.uniform(0.2, 0.3, size=(1, c, 1, 1))),
        _init("cw", rng.normal(size=(4, c, 3, 3)) / 3),
        _init("cb", rng.normal(size=4) * 0.1),
        _init("g", rng.uniform(0.5, 1.5, size=4)),
        _init("beta", rng.normal(size=4) * 0.1),
        _init("mu", rng.normal(size=4) * 0.1),
        _init("var", rng.uniform(0.5, 2, size=4)),
        _init("cw2", rng.normal(size=(5, 4, 2, 2)) / 2),
        _init("flat", [-1, 7 * 7 * 5], np.int64),
        _init("mw", rng.normal(size=(245, 16)) / 10),
        _init("mb", rng.normal(size=16) * 0.1),
        _init("half", 0.5),
        _init("gw", rng.normal(size=(classes, 16))),
        _init("gb", rng.normal(size=classes) * 0.1),
    ]
    batch = in_shape[0]
    return _save_model(nodes, inits, in_shape, [batch, classes], path)


def _ort_outputs(path, images, shape):
    """Raw onnxruntime, one image at a time, on images already in the model's layout."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = tuple(1 if isinstance(d, str) else d for d in shape)
    out = [sess.run(None, {"image": img.reshape(shape).astype(np.float32)})[0] for img in images]
    return np.concatenate(out)


@pytest.mark.parametrize("shape", IMAGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_published_graph_agrees_with_onnxruntime(shape, tmp_path):
    path = published_style(tmp_path / "m.onnx", shape)
    net = onnx_io.load_affine(path, input_size=784)
    assert net.input_dim == 784 and net.output_dim == 10
    images = np.random.default_rng(1).uniform(size=(20, 784)).astype(np.float32)
    ref = _ort_outputs(path, images, shape)
    np.testing.assert_allclose(net.forward(images), ref, atol=1e-5)
    ort = onnx_io.OrtClassifier(path)  # feeds (N, 1, 28, 28) images in the model's shape
    np.testing.assert_allclose(ort.logits(images.reshape(20, 1, 28, 28)), ref, atol=1e-6)


def test_trailing_softmax_is_dropped_keeping_the_order(tmp_path):
    path = published_style(tmp_path / "m.onnx", (1, 1, 28, 28), softmax=True)
    plain = published_style(tmp_path / "plain.onnx", (1, 1, 28, 28), softmax=False)
    images = np.random.default_rng(4).uniform(size=(20, 784)).astype(np.float32)
    np.testing.assert_array_equal(
        onnx_io.load_affine(path).layers[-1][0], onnx_io.load_affine(plain).layers[-1][0]
    )
    probs = _ort_outputs(path, images, (1, 1, 28, 28))
    logits = onnx_io.load_affine(path).forward(images)
    np.testing.assert_array_equal(probs.argmax(1), logits.argmax(1))


def test_channels_last_rgb_model_reads_our_chw_images(tmp_path):
    path = published_style(
        tmp_path / "rgb.onnx", (1, 28, 28, 3), channels=3, classes=5, channels_last=True
    )
    net = onnx_io.load_affine(path, input_size=3 * 784)
    chw = np.random.default_rng(2).uniform(size=(20, 3, 28, 28)).astype(np.float32)
    hwc = chw.transpose(0, 2, 3, 1).reshape(20, -1)
    ref = _ort_outputs(path, hwc, (1, 28, 28, 3))
    np.testing.assert_allclose(net.forward(chw.reshape(20, -1)), ref, atol=1e-5)
    np.testing.assert_allclose(onnx_io.OrtClassifier(path).logits(chw), ref, atol=1e-6)


def test_average_pool_without_padding_count_and_global_pool(tmp_path):
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node(
            "AveragePool", ["image"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Conv", ["p", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["q"]),
        helper.make_node("Flatten", ["q"], ["f"]),
        helper.make_node("Gemm", ["f", "gw"], ["probs"]),
    ]
    inits = [_init("w", rng.normal(size=(6, 1, 1, 1))), _init("gw", rng.normal(size=(6, 3)))]
    path = _save_model(nodes, inits, (1, 1, 28, 28), (1, 3), tmp_path / "pool.onnx")
    net = onnx_io.load_affine(path)
    images = rng.uniform(size=(5, 784)).astype(np.float32)
    ort = onnx_io.OrtClassifier(path)
    np.testing.assert_allclose(net.forward(images), ort.logits(images), atol=1e-5)


def test_not_onnx_names_the_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xff\xff")
    for load in (onnx_io.load_affine, onnx_io.OrtClassifier):
        with pytest.raises(ModelError) as err:
            load(bad)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelError, match="not found"):
        onnx_io.load_affine(tmp_path / "missing.onnx")


def test_unsupported_operator_names_node_op_and_file(tmp_path):
    nodes = [
        helper.make_node("Flatten", ["image"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["z"], transB=1),
        helper.make_node("Sigmoid", ["z"], ["s"], name="squash"),
        helper.make_node("Gemm", ["s", "w2"], ["probs"], transB=1),
    ]
    inits = [_init("w", np.ones((4, 784))), _init("w2", np.ones((2, 4)))]
    path = _save_model(nodes, inits, (1, 1, 28, 28), (1, 2), tmp_path / "sig.onnx")
    with pytest.raises(ModelError) as err:
        onnx_io.load_affine(path)
    msg = str(err.value)
    assert "'squash'" in msg and "Sigmoid" in msg and str(path) in msg and "\n" not in msg


def test_max_pool_and_skip_connections_are_refused(tmp_path):
    nodes = [
        helper.make_node("MaxPool", ["image"], ["m"], kernel_shape=[2, 2], name="pool1"),
        helper.make_node("Flatten", ["m"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["probs"], transB=1),
    ]
    path = _save_model(
        nodes, [_init("w", np.ones((2, 729)))], (1, 1, 28, 28), (1, 2), tmp_path / "mp.onnx"
    )
    with pytest.raises(ModelError, match="'pool1' \\(MaxPool\\)"):
        onnx_io.load_affine(path)
    nodes = [
        helper.make_node("Flatten", ["image"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["z"], transB=1),
        helper.make_node("Relu", ["z"], ["h"]),
        helper.make_node("Add", ["h", "z"], ["s"], name="residual"),
        helper.make_node("Gemm", ["s", "w2"], ["probs"], transB=1),
    ]
    inits = [_init("w", np.ones((4, 784))), _init("w2", np.ones((2, 4)))]
    path = _save_model(nodes, inits, (1, 1, 28, 28), (1, 2), tmp_path / "skip.onnx")
    with pytest.raises(ModelError, match="'residual'.*feed-forward"):
        onnx_io.load_affine(path)


def test_wrong_input_size_says_expected_and_got(tmp_path):
    path = published_style(tmp_path / "m.onnx", (1, 1, 28, 28))
    with pytest.raises(ModelError) as err:
        onnx_io.load_affine(path, input_size=3 * 784)
    msg = str(err.value)
    assert "784" in msg and "2352" in msg and str(path) in msg
    with pytest.raises(ModelError, match="2352"):
        onnx_io.OrtClassifier(path).logits(np.zeros((2, 3, 28, 28)))
    with pytest.raises(ModelError, match="784.*2352"):
        onnx_io.check_input_size(path, 2352)
