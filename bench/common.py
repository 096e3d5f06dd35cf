"""What every benchmark shares: rounds, medians and ranges, ratios, and throwaway servers."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.processes import REPO_ROOT, wait_until
from tests.support.stack import Stack
from tests.support.stack_fixtures import REDIS_PASSWORD

PYTHON = sys.executable


@dataclass(frozen=True)
class Figure:
    """Several rounds of one measurement: the table shows the median and the range."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, fmt: str = "{:,.0f}") -> str:
        lo, hi = min(self.values), max(self.values)
        return f"{fmt.format(self.median)} ({fmt.format(lo)} to {fmt.format(hi)})"


@dataclass(frozen=True)
class Row:
    """One line of the results table: a figure next to the baseline measured in the same run."""

    benchmark: str
    metric: str
    ours: str
    baseline: str
    baseline_name: str
    ratio: float | None
    target: str = ""

    def markdown(self) -> str:
        ratio = f"{self.ratio:.2f}x" if self.ratio is not None else "-"
        return (
            f"| {self.benchmark} | {self.metric} | {self.ours} | {self.baseline} "
            f"({self.baseline_name}) | {ratio} | {self.target} |"
        )


TABLE_HEADER = (
    "| benchmark | metric | this project: median (range) | baseline, same run | ratio | target |\n"
    "| --- | --- | --- | --- | --- | --- |"
)


def paired_ratio(ours: Figure, baseline: Figure) -> float:
    """Median of the per-round ratios: each round's pair ran back to back, so drift on a shared
    machine cancels out better than in a ratio of the two medians."""
    return statistics.median(a / b for a, b in zip(ours.values, baseline.values, strict=True))


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


class Process:
    """A background process with its output in a log file; ``stop`` sends SIGTERM, then kills."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            list(cmd),
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def wait_for(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log.name} exited:\n{self.log.read_text()[-3000:]}")
            return text in self.log.read_text(errors="replace")

        wait_until(seen, timeout=timeout, what=f"{text!r} in {self.log.name}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def node(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 100000}@{socket.gethostname()}"


def container_redis(stack: Stack, service: str, port: int = 6379) -> redis.Redis:
    """A client of a Redis or sentinel container of a prod stack (password from
    ``write_secrets``) at its address on the stack's network: the host reaches it directly,
    where a ``docker compose exec`` per call would load the machine being measured."""
    (container,) = stack.container_ids(service)
    address = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         container], capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return redis.Redis(host=address, port=port, password=REDIS_PASSWORD, socket_timeout=2,
                       decode_responses=True)  # fmt: skip
