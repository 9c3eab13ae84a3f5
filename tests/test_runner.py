import os
import signal
import time
from pathlib import Path

from processes import gone

from medverify.runner import run_isolated


def _sleep_forever():
    while True:
        time.sleep(1)


def _fork_sleeping_grandchild(path):
    """Fork a grandchild that sleeps forever, holding the answer pipe open (as a solver
    subprocess or a worker process inherits it); its pid goes to ``path``."""
    pid = os.fork()
    if pid == 0:
        _sleep_forever()
    with open(path, "w") as fh:
        fh.write(str(pid))


def _spawn_sleeping_grandchild(path):
    _fork_sleeping_grandchild(path)
    _sleep_forever()


def _answer_leaving_a_grandchild(path):
    """Answer at once, leaving a sleeping grandchild behind."""
    _fork_sleeping_grandchild(path)
    return 42


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _boom():
    raise RuntimeError("bad value 42")


def test_returns_value():
    out = run_isolated(sum, [1, 2, 3], timeout_s=10)
    assert out.kind == "ok" and out.value == 6


def test_sleeper_killed_within_timeout_plus_2s():
    start = time.perf_counter()
    out = run_isolated(_sleep_forever, timeout_s=1.0)
    assert out.kind == "timeout"
    assert time.perf_counter() - start < 1.0 + 2.0


def test_whole_process_group_is_killed(tmp_path):
    marker = tmp_path / "pid"
    out = run_isolated(_spawn_sleeping_grandchild, str(marker), timeout_s=1.0)
    assert out.kind == "timeout"
    grandchild = int(marker.read_text())
    assert gone(grandchild, within_s=2.0), f"grandchild {grandchild} survived the timeout kill"


def test_answer_is_not_held_up_by_a_grandchild_holding_the_pipe(tmp_path):
    """The child answers and exits; a grandchild that inherited the pipe keeps it open.
    The answer comes back at once (the drain does not wait for the grandchild's end of
    the pipe) and the grandchild is killed."""
    marker = tmp_path / "pid"
    start = time.perf_counter()
    out = run_isolated(_answer_leaving_a_grandchild, str(marker), timeout_s=20.0)
    assert out.kind == "ok" and out.value == 42
    assert time.perf_counter() - start < 5.0, "the answer waited for the grandchild"
    grandchild = int(marker.read_text())
    assert gone(grandchild, within_s=2.0), f"grandchild {grandchild} survived its job"


def test_segfault_becomes_crash():
    out = run_isolated(_segfault, timeout_s=10)
    assert out.kind == "crash" and "SIGSEGV" in out.message


def test_exception_is_reported():
    out = run_isolated(_boom, timeout_s=10)
    assert out.kind == "exception" and "bad value 42" in out.message


def _zombie_children() -> list[int]:
    """Pids of this process's children that exited but were never reaped."""
    zombies = []
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            text = Path(f"/proc/{stat}/stat").read_text()
        except OSError:
            continue
        state, ppid = text.rsplit(")", 1)[1].split()[:2]
        if state == "Z" and int(ppid) == os.getpid():
            zombies.append(int(stat))
    return zombies


def _slow_value():
    time.sleep(1.2)  # outlives the parent's 0.5 s polls of the child
    return 7


def test_no_child_is_left_unreaped():
    """A search runs hundreds of probes in one process: every child must be reaped,
    whether it answered after the parent polled it, timed out, or crashed."""
    before = set(_zombie_children())
    assert run_isolated(_slow_value, timeout_s=10).value == 7
    assert run_isolated(_sleep_forever, timeout_s=0.6).kind == "timeout"
    assert run_isolated(_segfault, timeout_s=10).kind == "crash"
    assert set(_zombie_children()) - before == set()
