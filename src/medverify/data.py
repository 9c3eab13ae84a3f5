"""Load MedMNIST-layout npz files as float32 images in [0, 1].

The `medmnist` package is the source of truth for dataset names, download URLs and md5
sums. Files are looked up as ``<root>/<name>.npz``; a missing file is downloaded through
medmnist only when downloading is allowed. Any npz with the MedMNIST layout
(``{train,val,test}_{images,labels}``) also loads under any name: a name medmnist does
not know is read without an md5 check (said once in the log), and a file holding only
``test_images``/``test_labels`` is enough for an external classifier (nothing to train).
"""

from __future__ import annotations

import functools
import logging
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError
from .fileio import atomic_path, digest

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: MedMNIST's image side (the 28 x 28 release): every image is (channels, SIDE, SIDE)
SIDE = 28


def input_size(channels: int) -> int:
    """Pixels of one image with ``channels`` channels: a classifier's input size."""
    return channels * SIDE * SIDE


#: what np.load raises on a truncated or corrupt npz
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)
_UNCHECKED_SAID: set[Path] = set()
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def medmnist_info(name: str) -> dict | None:
    """The INFO entry medmnist records for ``name`` (None for a non-MedMNIST name)."""
    return _medmnist_table().get(name)


@functools.cache
def _medmnist_table() -> dict:
    """medmnist's INFO table, read from its ``info`` module alone: importing the package
    runs its ``__init__`` (torch, PIL, every dataset class), seconds that every
    ``medverify verify`` on a MedMNIST name paid for one md5 (3.6 s of 3.9 under
    cProfile). Falls back to the package import when the module is not where expected."""
    import importlib.util

    spec = importlib.util.find_spec("medmnist")
    if spec is None:  # pragma: no cover - medmnist is a hard dependency of the venv
        return {}
    for folder in spec.submodule_search_locations or ():
        path = Path(folder) / "info.py"
        if path.is_file():
            only = importlib.util.spec_from_file_location("_medverify_medmnist_info", path)
            module = importlib.util.module_from_spec(only)
            only.loader.exec_module(module)
            return dict(module.INFO)
    from medmnist import INFO  # pragma: no cover

    return dict(INFO)  # pragma: no cover


def md5sum(path: str | os.PathLike) -> str:
    return digest(path, "md5")


def expected_md5(name: str) -> str | None:
    info = medmnist_info(name)
    return info["MD5"] if info else None


def dataset_path(name: str, root: str | os.PathLike) -> Path:
    return Path(root) / f"{name}.npz"


def _download(name: str, root: Path) -> None:
    """Download through medmnist; fall back to urllib when medmnist's own route
    (torchvision's download_url) is unavailable."""
    info = medmnist_info(name)
    if info is None:
        raise DataError(
            f"cannot download unknown dataset {name!r}: not a MedMNIST name; "
            f"place {name}.npz in {root}"
        )
    root.mkdir(parents=True, exist_ok=True)
    import medmnist

    cls = getattr(medmnist, info["python_class"])
    try:
        cls(split="test", root=str(root), download=True)
        return
    except RuntimeError:
        pass  # medmnist's downloader needs torchvision; try plain urllib below
    import urllib.request

    target = dataset_path(name, root)
    try:
        with atomic_path(target) as tmp:
            urllib.request.urlretrieve(info["url"], tmp)
    except OSError as exc:
        raise DataError(
            f"download of {name} from {info['url']} failed ({exc}); download it by hand "
            f"to {target} (md5 {info['MD5']})"
        ) from None


def ensure_file(
    name: str, root: str | os.PathLike, download: bool = False, md5: str | None = "auto"
) -> Path:
    """Path of a verified npz for ``name``; downloads it if missing and allowed.

    ``md5="auto"`` checks against medmnist's record (when ``name`` is a MedMNIST name),
    a hex string checks against that value, ``None`` skips the check.
    """
    root = Path(root)
    path = dataset_path(name, root)
    want = expected_md5(name) if md5 == "auto" else md5
    if md5 == "auto" and want is None and path not in _UNCHECKED_SAID and path.exists():
        _UNCHECKED_SAID.add(path)
        log.warning(
            "dataset %r is not a MedMNIST name: reading %s without an md5 check", name, path
        )
    if not path.exists():
        if download:
            _download(name, root)
        else:
            hint = (
                f"set allow_download: true to fetch it through medmnist (md5 {want})"
                if want
                else "put a MedMNIST-layout npz there"
            )
            raise DataError(f"data file {path} not found: {hint}, or point data_dir elsewhere")
    if want is not None:
        got = md5sum(path)
        if got != want:
            raise DataError(
                f"md5 mismatch for {path}: expected {want}, got {got}; delete the file and "
                f"download it again (allow_download: true) or set its md5 to null in config"
            )
    return path


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # float32, (N, C, 28, 28), values in [0, 1]
    labels: np.ndarray  # int64, (N,)


def to_float(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,3) -> float32 (N,C,H,W) in [0,1] with C = channels."""
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (luminance) or 3 (RGB), got {channels!r}")
    x = images.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[:, None]
        if channels == 3:
            x = np.repeat(x, 3, axis=1)
    elif x.ndim == 4 and x.shape[-1] == 3:
        x = np.transpose(x, (0, 3, 1, 2))
        if channels == 1:
            x = np.tensordot(x, LUMA, axes=([1], [0]))[:, None].astype(np.float32)
    else:
        raise DataError(f"unexpected image array shape {images.shape}: want (N,H,W) or (N,H,W,3)")
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def load(
    name: str,
    root: str | os.PathLike,
    channels: int = 1,
    download: bool = False,
    md5: str | None = "auto",
    splits: tuple[str, ...] = SPLITS,
) -> dict[str, Split]:
    """The requested splits (default all three) of a MedMNIST-layout dataset; only those
    are read and converted."""
    if channels not in (1, 3):
        raise ConfigError(f"channels must be 1 (luminance) or 3 (RGB), got {channels!r}")
    path = ensure_file(name, root, download=download, md5=md5)
    try:
        with np.load(path) as npz:
            present = set(npz.files)
            out = {}
            for split in splits:
                missing = [k for k in (f"{split}_images", f"{split}_labels") if k not in present]
                if missing:
                    raise DataError(
                        f"{path} has no {missing[0]!r} array (it holds: "
                        f"{', '.join(sorted(present)) or 'nothing'}); a MedMNIST-layout npz "
                        "needs {train,val,test}_{images,labels} (test_* alone for an external model)"
                    )
                imgs = npz[f"{split}_images"]
                labels = np.asarray(npz[f"{split}_labels"]).reshape(len(imgs), -1)[:, 0]
                out[split] = Split(to_float(imgs, channels), labels.astype(np.int64))
    except _CORRUPT as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is truncated or corrupt, not a readable npz ({first})") from None
    return out


def splits_in(name: str, root: str | os.PathLike) -> tuple[str, ...]:
    """The splits a dataset file holds (in SPLITS order), without reading the arrays."""
    path = dataset_path(name, root)
    try:
        with np.load(path) as npz:
            files = set(npz.files)
    except _CORRUPT as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path} is truncated or corrupt, not a readable npz ({first})") from None
    found = tuple(s for s in SPLITS if {f"{s}_images", f"{s}_labels"} <= files)
    if "test" not in found:
        raise DataError(
            f"{path} has no 'test_images'/'test_labels' arrays (it holds: "
            f"{', '.join(sorted(files)) or 'nothing'})"
        )
    return found


def num_classes(splits: dict[str, Split]) -> int:
    return int(max(int(s.labels.max()) for s in splits.values()) + 1)


def write_standin(path: str | os.PathLike, n=(7007, 1003, 2005), classes=7, rgb=True, seed=0):
    """Write a generated npz with the shapes of DermaMNIST (for code-path tests only)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(SPLITS, n, strict=True):
        shape = (count, SIDE, SIDE, 3) if rgb else (count, SIDE, SIDE)
        labels = rng.integers(0, classes, size=(count, 1), dtype=np.uint8)
        base = rng.integers(0, 200, size=shape, dtype=np.int64)
        # make the class learnable: brighten a label-dependent band
        imgs = base.copy()
        for c in range(classes):
            sel = labels[:, 0] == c
            imgs[sel, 4 * c : 4 * c + 4] += 55
        arrays[f"{split}_images"] = np.clip(imgs, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels
    np.savez_compressed(path, **arrays)
    return Path(path)
