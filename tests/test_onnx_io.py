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
