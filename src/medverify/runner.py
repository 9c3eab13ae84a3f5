"""Run a function in a child process group with a hard wall-clock kill.

The child is forked (cheap: no interpreter start, no re-import), becomes its own
process group leader, and sends its pickled return value through a pipe. At
``timeout_s + grace_s`` the whole group gets SIGKILL. A crash (signal, segfault),
an exception, or a child that dies without answering is reported, never raised.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    kind: str  # "ok" | "timeout" | "crash" | "exception"
    value: Any = None
    message: str = ""
    seconds: float = 0.0
    #: the child's peak resident set and peak address space, MB (when it answered)
    peak_rss_mb: float | None = None
    peak_vm_mb: float | None = None


def _peaks() -> tuple[float | None, float | None]:
    """This process's peak RSS (VmHWM) and peak address space (VmPeak) in MB (Linux)."""
    try:
        with open("/proc/self/status") as fh:
            status = dict(line.split(":", 1) for line in fh if ":" in line)
        return (
            int(status["VmHWM"].split()[0]) / 1024,
            int(status["VmPeak"].split()[0]) / 1024,
        )
    except (OSError, KeyError, ValueError):
        return None, None


def die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this child when the job process dies (even by SIGKILL), so an
    interrupted job leaves no solver behind. Best effort elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(fn, args, kwargs, wfd, mem_limit_mb, parent):
    os.setsid()
    die_with_parent(parent)
    if mem_limit_mb:
        import resource

        limit = int(mem_limit_mb) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        payload = ("ok", fn(*args, **kwargs))
    except MemoryError:
        payload = ("exception", f"out of memory (limit {mem_limit_mb} MB)")
    except BaseException as exc:  # noqa: BLE001 - everything becomes an error record
        tb = traceback.format_exc(limit=8)
        payload = ("exception", f"{type(exc).__name__}: {exc}\n{tb}")
    payload = (*payload, _peaks())
    try:
        data = pickle.dumps(payload)
    except Exception as exc:  # noqa: BLE001
        data = pickle.dumps(("exception", f"unpicklable result: {exc}", _peaks()))
    with os.fdopen(wfd, "wb") as fh:
        fh.write(data)
    os._exit(0)


def run_isolated(
    fn, *args, timeout_s: float, grace_s: float = 1.0, mem_limit_mb: int | None = None, **kwargs
) -> Outcome:
    rfd, wfd = os.pipe()
    start = time.perf_counter()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        try:
            _child(fn, args, kwargs, wfd, mem_limit_mb, parent)
        finally:
            os._exit(1)
    os.close(wfd)
    try:
        return _wait(pid, rfd, start, timeout_s, grace_s)
    except BaseException:  # interrupted (SIGINT, SIGTERM as an exception): no orphans
        _kill_group(pid)
        raise


def _wait(pid: int, rfd: int, start: float, timeout_s: float, grace_s: float) -> Outcome:
    deadline = start + timeout_s + grace_s
    chunks: list[bytes] = []
    status = None
    timed_out = False
    with os.fdopen(rfd, "rb", buffering=0) as reader:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([reader], [], [], min(remaining, 0.5))
            if ready:
                chunk = reader.read(1 << 16)
                if chunk:
                    chunks.append(chunk)
                    continue
                break  # EOF: the child closed the pipe (finished or died)
            done, child_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status = child_status  # reaped: only now is the status the child's
                # everything it wrote is in the pipe now; its own children (a solver,
                # crown's workers) may still hold the pipe open, so the drain reads only
                # what is there instead of waiting for an end of file
                _kill_group(pid)
                while select.select([reader], [], [], 0.05)[0]:
                    chunk = reader.read(1 << 16)
                    if not chunk:
                        break
                    chunks.append(chunk)
                break
    if timed_out:
        _kill_group(pid)
    if status is None:  # not reaped yet (answer read, or killed): no zombie left behind
        _, status = os.waitpid(pid, 0)
    _kill_group(pid)  # stray grandchildren (solver subprocesses) go too
    seconds = time.perf_counter() - start
    if timed_out:
        return Outcome(
            "timeout",
            message=f"killed after {seconds:.1f}s (timeout {timeout_s}s)",
            seconds=seconds,
        )
    if chunks:
        try:
            kind, value, (rss, vm) = pickle.loads(b"".join(chunks))
        except Exception as exc:  # noqa: BLE001
            return Outcome("crash", message=f"unreadable child answer: {exc}", seconds=seconds)
        if kind == "ok":
            return Outcome("ok", value=value, seconds=seconds, peak_rss_mb=rss, peak_vm_mb=vm)
        return Outcome("exception", message=value, seconds=seconds, peak_rss_mb=rss, peak_vm_mb=vm)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return Outcome(
            "crash", message=f"verifier process died with signal {name}", seconds=seconds
        )
    return Outcome(
        "crash",
        message=f"verifier process exited with code {os.WEXITSTATUS(status)} without an answer",
        seconds=seconds,
    )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
