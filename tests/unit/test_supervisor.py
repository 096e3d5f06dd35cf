"""The reloading supervisor (services/launcher.py) with small child processes and a watched
temporary folder: it restarts the child on a code change (the new one first), stops a child
that ignores SIGTERM once the grace period is over, and passes on a final exit code."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.launcher import Supervisor
from tests.support.processes import wait_until

# Leaves a file named after its pid in the folder, then sleeps; ignores SIGTERM if asked to.
CHILD = """
import os, signal, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(sys.argv[1], f"{os.getpid()}.pid"), "w").close()
time.sleep(60)
"""


class Running:
    """A supervisor run in a background thread (stopped through its stop_event)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.codes: list[int] = []
        self.thread = threading.Thread(target=lambda: self.codes.append(supervisor.run()))
        self.thread.start()

    def stop(self, timeout: float = 10) -> int:
        self.supervisor.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the supervisor did not stop"
        return self.codes[0]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "code").mkdir()
    (tmp_path / "pids").mkdir()
    return tmp_path / "code", tmp_path / "pids"


def pids(folder: Path) -> list[int]:
    return [int(p.stem) for p in folder.glob("*.pid")]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def supervise(folders: tuple[Path, Path]) -> Iterator[Callable[..., Running]]:
    code, pid_dir = folders
    running: list[Running] = []

    def start(mode: str = "polite", grace: float = 5.0) -> Running:
        cmd = [sys.executable, "-c", CHILD, str(pid_dir), mode]
        run = Running(Supervisor(cmd, grace_seconds=grace, overlap=True, watch=[code]))
        running.append(run)
        return run

    yield start
    for run in running:
        if run.thread.is_alive():
            run.stop()


def test_a_code_change_starts_a_new_child_before_the_old_one_stops(
    supervise: Callable[..., Running], folders: tuple[Path, Path]
) -> None:
    code, pid_dir = folders
    # Children that ignore SIGTERM, so the old one lives out its grace period.
    run = supervise("stubborn", grace=1.0)
    wait_until(lambda: len(pids(pid_dir)) == 1, timeout=10, what="the first child")
    (first,) = pids(pid_dir)
    (code / "tasks.py").write_text("x = 1\n")
    wait_until(lambda: len(pids(pid_dir)) == 2, timeout=10, what="the new child")
    assert alive(first), "the new child starts while the old one still drains"
    wait_until(lambda: not alive(first), timeout=10, what="the old child to be stopped")
    (second,) = set(pids(pid_dir)) - {first}
    assert alive(second)
    (code / "notes.txt").write_text("not code")  # only Python files count
    time.sleep(1.2)
    assert len(pids(pid_dir)) == 2
    assert run.stop() == -signal.SIGKILL
    assert not alive(second)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    supervise: Callable[..., Running], folders: tuple[Path, Path]
) -> None:
    _, pid_dir = folders
    run = supervise("stubborn", grace=0.5)
    wait_until(lambda: len(pids(pid_dir)) == 1, timeout=10, what="the child")
    stopping = time.monotonic()
    assert run.stop() == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - stopping < 3


@pytest.mark.parametrize(("exit_code", "restarted"), [(2, False), (0, False), (1, True)])
def test_final_exit_codes_end_the_supervisor_and_others_wait_for_a_change(
    folders: tuple[Path, Path], exit_code: int, restarted: bool
) -> None:
    code, pid_dir = folders
    marker = pid_dir / "runs"
    # Counts its runs; exits with the code under test on the first, then sleeps.
    child = (
        f"import pathlib, time; p = pathlib.Path({str(marker)!r}); n = len(p.read_text()) "
        f"if p.exists() else 0; p.write_text('x' * (n + 1)); "
        f"raise SystemExit({exit_code}) if n == 0 else time.sleep(60)"
    )
    run = Running(
        Supervisor([sys.executable, "-c", child], grace_seconds=5, overlap=True, watch=[code])
    )
    if not restarted:
        run.thread.join(10)
        assert run.codes == [exit_code], "a final exit code ends the supervisor with it"
        return
    wait_until(lambda: marker.exists(), timeout=10, what="the first run")
    time.sleep(1.2)
    assert run.thread.is_alive() and marker.read_text() == "x", "no restart without a change"
    (code / "fix.py").write_text("fixed = True\n")
    wait_until(lambda: marker.read_text() == "xx", timeout=10, what="the restart after a change")
    assert run.stop() == -signal.SIGTERM
