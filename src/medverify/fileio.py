"""File helpers used everywhere: one hashing helper and one atomic-write helper."""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes (``algorithm``: any hashlib name, e.g. sha256, md5)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in the target's directory; on success it replaces ``path``
    (``os.replace``), on any failure it is removed. A reader never sees a half-written
    file, and a killed writer leaves only a hidden ``.<name>.*.tmp`` behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, content: str | bytes) -> None:
    """Write text or bytes to ``path`` atomically (see :func:`atomic_path`)."""
    mode = "wb" if isinstance(content, bytes) else "w"
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        fh.write(content)


def _flush_all() -> None:
    """Flush Python's stdout/stderr and C's stdio buffers (what a C library printed and
    has not written yet)."""
    import ctypes
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to ask: nothing buffered there
        pass


@contextmanager
def fds_to(target: int, fds=(1, 2)):
    """While inside, the file descriptors ``fds`` (default stdout and stderr: what C code,
    solvers and child processes print) write where the open descriptor ``target`` does;
    Python's and C's buffers are flushed on the way in and out, so nothing printed
    before lands after, or the other way round. The caller owns ``target``."""
    saved = []
    try:
        _flush_all()
        for fd in fds:
            saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
        yield
    finally:
        _flush_all()
        for fd, kept in saved:
            os.dup2(kept, fd)
            os.close(kept)
