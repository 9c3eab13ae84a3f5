import shutil

import numpy as np
import pytest

from medverify import data
from medverify.errors import ConfigError, DataError

PNEUMONIA_MD5 = "28209eda62fecd6e6a2d98b1501bb15f"


def test_real_pneumonia_shapes_and_range(pneumonia):
    assert set(pneumonia) == {"train", "val", "test"}
    assert pneumonia["train"].images.shape == (4708, 1, 28, 28)
    assert pneumonia["test"].images.shape == (624, 1, 28, 28)
    assert pneumonia["test"].images.dtype == np.float32
    for split in pneumonia.values():
        assert split.images.min() >= 0.0 and split.images.max() <= 1.0
    assert np.bincount(pneumonia["test"].labels).tolist() == [234, 390]


def test_md5_is_medmnists_record(medmnist_dir):
    assert data.expected_md5("pneumoniamnist") == PNEUMONIA_MD5
    assert data.md5sum(medmnist_dir / "pneumoniamnist.npz") == PNEUMONIA_MD5


def test_md5_mismatch_names_path_and_fix(medmnist_dir, tmp_path):
    target = tmp_path / "pneumoniamnist.npz"
    shutil.copy(medmnist_dir / "pneumoniamnist.npz", target)
    with open(target, "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DataError) as err:
        data.load("pneumoniamnist", tmp_path)
    msg = str(err.value)
    assert str(target) in msg and PNEUMONIA_MD5 in msg and "download" in msg
    assert "\n" not in msg


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(DataError) as err:
        data.load("pneumoniamnist", tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "pneumoniamnist.npz") in msg and PNEUMONIA_MD5 in msg
    assert "\n" not in msg


def test_unknown_dataset_cannot_download(tmp_path):
    with pytest.raises(DataError, match="nosuchmnist"):
        data.load("nosuchmnist", tmp_path, download=True)


def test_bad_channels(medmnist_dir):
    with pytest.raises(ConfigError, match="channels must be 1 .* got 2"):
        data.load("pneumoniamnist", medmnist_dir, channels=2)


def test_rgb_dataset_luminance_and_rgb(medmnist_dir):
    lum = data.load("retinamnist", medmnist_dir, channels=1)
    rgb = data.load("retinamnist", medmnist_dir, channels=3)
    assert lum["test"].images.shape == (400, 1, 28, 28)
    assert rgb["test"].images.shape == (400, 3, 28, 28)
    expect = np.tensordot(rgb["test"].images[:5], data.LUMA, axes=([1], [0]))
    np.testing.assert_allclose(lum["test"].images[:5, 0], expect, atol=1e-6)
    assert data.num_classes(lum) == 5


def test_grayscale_as_rgb_repeats(pneumonia, medmnist_dir):
    rgb = data.load("pneumoniamnist", medmnist_dir, channels=3)
    np.testing.assert_array_equal(rgb["val"].images[:, 1], pneumonia["val"].images[:, 0])


def test_standin_dermamnist_code_path(tmp_path):
    data.write_standin(tmp_path / "dermamnist.npz", n=(70, 10, 20))
    # the generated file is not the real one: md5 "auto" must refuse it ...
    with pytest.raises(DataError, match="md5 mismatch"):
        data.load("dermamnist", tmp_path)
    # ... and md5=None loads it with DermaMNIST's shapes
    splits = data.load("dermamnist", tmp_path, channels=3, md5=None)
    assert splits["train"].images.shape == (70, 3, 28, 28)
    assert data.num_classes(splits) <= 7


def test_not_medmnist_layout(tmp_path):
    np.savez(tmp_path / "weird.npz", foo=np.zeros(3))
    with pytest.raises(DataError, match="no 'train_images' array .*foo"):
        data.load("weird", tmp_path, md5=None)


def _copy_test_split(medmnist_dir, target, **extra):
    with np.load(medmnist_dir / "pneumoniamnist.npz") as npz:
        arrays = {k: npz[k] for k in ("test_images", "test_labels")}
    np.savez_compressed(target, **arrays, **extra)
    return target


def test_any_name_loads_without_md5_and_says_so_once(medmnist_dir, tmp_path, caplog):
    target = tmp_path / "chest_external.npz"
    shutil.copy(medmnist_dir / "pneumoniamnist.npz", target)
    with caplog.at_level("WARNING", logger="medverify.data"):
        a = data.load("chest_external", tmp_path, splits=("test",))
        b = data.load("chest_external", tmp_path, splits=("test",))
    said = [r.getMessage() for r in caplog.records if "without an md5 check" in r.getMessage()]
    assert len(said) == 1 and str(target) in said[0] and "chest_external" in said[0]
    assert a["test"].images.shape == (624, 1, 28, 28)
    np.testing.assert_array_equal(a["test"].labels, b["test"].labels)


def test_test_split_alone_is_enough_for_an_external_model(medmnist_dir, tmp_path):
    path = _copy_test_split(medmnist_dir, tmp_path / "testonly.npz")
    assert data.splits_in("testonly", tmp_path) == ("test",)
    test = data.load("testonly", tmp_path, md5=None, splits=("test",))["test"]
    assert test.images.shape == (624, 1, 28, 28)
    with pytest.raises(DataError) as err:
        data.load("testonly", tmp_path, md5=None)  # asking for train fails, naming it
    msg = str(err.value)
    assert str(path) in msg and "'train_images'" in msg and "\n" not in msg


def test_npz_without_test_images_is_one_line_error(tmp_path):
    np.savez(tmp_path / "notest.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    for call in (
        lambda: data.splits_in("notest", tmp_path),
        lambda: data.load("notest", tmp_path, md5=None, splits=("test",)),
    ):
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert "test_images" in msg and str(tmp_path / "notest.npz") in msg and "\n" not in msg


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_truncated_or_corrupt_npz_is_one_line_error(medmnist_dir, tmp_path, damage):
    path = _copy_test_split(medmnist_dir, tmp_path / "broken.npz")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:  # keep the zip directory, garble the compressed array data
        mid = len(raw) // 3
        path.write_bytes(
            raw[:mid] + bytes(b ^ 0x5A for b in raw[mid : mid + 2000]) + raw[mid + 2000 :]
        )
    with pytest.raises(DataError) as err:
        data.load("broken", tmp_path, md5=None, splits=("test",))
    msg = str(err.value)
    assert str(path) in msg and "corrupt" in msg and "\n" not in msg


def test_medmnist_info_without_importing_the_package():
    """The md5 table comes from medmnist's info module alone (the package import costs
    seconds per command) and equals the package's own INFO."""
    import subprocess
    import sys

    script = (
        "import sys; from medverify import data;"
        "e = {n: data.medmnist_info(n) for n in ('pneumoniamnist', 'dermamnist', 'nope')};"
        "print('medmnist' in sys.modules);"
        "import medmnist; print(all(e[n] == medmnist.INFO.get(n) for n in e));"
        "print(e['pneumoniamnist']['MD5'], e['nope'])"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "False",
        "True",
        data.medmnist_info("pneumoniamnist")["MD5"],
        "None",
    ]
