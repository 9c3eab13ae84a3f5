import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    env = os.environ.get("MEDVERIFY_DATA_DIR")
    return Path(env) if env else (REPO.parent / "shared" / "data" / "medmnist").resolve()


@pytest.fixture(scope="session")
def medmnist_dir() -> Path:
    d = data_dir()
    if not (d / "pneumoniamnist.npz").exists():
        pytest.fail(f"real PneumoniaMNIST not found in {d}: set MEDVERIFY_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def pneumonia(medmnist_dir):
    from medverify import data

    return data.load("pneumoniamnist", medmnist_dir)


@pytest.fixture(scope="session")
def trained_mlp(pneumonia, tmp_path_factory):
    """A small MLP trained for a few epochs on real PneumoniaMNIST, exported to ONNX."""
    from medverify import onnx_io
    from medverify.train import TrainConfig, train

    model, metrics = train(
        pneumonia,
        2,
        TrainConfig(
            architecture="mlp", epochs=3, seed=0, brightness=0.04, contrast=0.04, noise_sigma=0.005
        ),
    )
    path = tmp_path_factory.mktemp("mlp") / "model.onnx"
    onnx_io.export_checked(model, pneumonia["test"].images[:100], path)
    return model, path, metrics


def tiny_problem_image(rng: np.random.Generator, shape=(1, 2, 2)) -> np.ndarray:
    return rng.uniform(0.1, 0.9, size=shape)


@pytest.fixture()
def toy_onnx(tmp_path) -> Path:
    """f0 = x0 + x1 + x2 + x3, f1 = 1.9 over a 2x2 image, as ONNX (label 0 at x = 0.5)."""
    from medverify import onnx_io
    from medverify.nets import AffineNet

    net = AffineNet(
        [(np.eye(4), np.zeros(4)), (np.array([[1.0] * 4, [0.0] * 4]), np.array([0, 1.9]))]
    )
    path = tmp_path / "toy.onnx"
    onnx_io.export_affine(net, path)
    return path
