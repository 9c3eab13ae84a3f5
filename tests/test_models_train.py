import numpy as np
import pytest
import torch

from medverify import models
from medverify.errors import ConfigError
from medverify.train import TrainConfig, augment, train


@pytest.mark.parametrize("arch", ["mlp", "cnn3"])
@pytest.mark.parametrize("channels,classes", [(1, 2), (3, 7)])
def test_shapes(arch, channels, classes):
    m = models.build(arch, channels, classes)
    out = m(torch.zeros(4, channels, 28, 28))
    assert out.shape == (4, classes)


def test_mlp_layout_is_the_papers():
    m = models.build("mlp", 1, 2)
    linears = [layer for layer in m if isinstance(layer, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (784, 128),
        (128, 128),
        (128, 2),
    ]


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        models.build("resnet", 1, 2)


def test_augment_stays_in_unit_interval():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    y = augment(x, TrainConfig(brightness=0.5, contrast=0.5, noise_sigma=0.2), g)
    assert y.min() >= 0 and y.max() <= 1
    assert not torch.equal(x, y)


def test_training_is_deterministic_and_learns(pneumonia):
    small = {k: type(v)(v.images[:600], v.labels[:600]) for k, v in pneumonia.items()}
    cfg = TrainConfig(architecture="mlp", epochs=2, seed=3)
    m1, met1 = train(small, 2, cfg)
    m2, met2 = train(small, 2, cfg)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert met1["test_accuracy"] == met2["test_accuracy"]
    assert met1["val_accuracy"] > 0.7  # far above chance on the real data
    assert set(met1) >= {
        "train_accuracy",
        "val_accuracy",
        "test_accuracy",
        "test_per_class_accuracy",
        "epochs",
        "seed",
        "seconds",
    }


def test_save_load_roundtrip(tmp_path):
    m = models.build("cnn3", 1, 3)
    models.save(m, tmp_path / "m.pt", {"architecture": "cnn3", "in_channels": 1, "num_classes": 3})
    m2, meta = models.load(tmp_path / "m.pt")
    x = torch.rand(2, 1, 28, 28)
    assert meta["num_classes"] == 3
    np.testing.assert_array_equal(m(x).detach().numpy(), m2(x).detach().numpy())


def test_sized_mlp_names():
    m = models.build("mlp256x4", 1, 10)
    widths = [layer.out_features for layer in m if isinstance(layer, torch.nn.Linear)]
    assert widths == [256, 256, 256, 256, 10]
    assert [layer.out_features for layer in models.build("mlp", 1, 2)[1::2]] == [128, 128, 2]
    with pytest.raises(ConfigError, match="unknown model 'mlp0x2'"):
        models.build("mlp0x2", 1, 2)
