"""End-to-end throughput: N trivial tasks submitted and completed, this project vs stock Celery.

Both sides use the same Redis (separate databases), the same task code (``tasks.add``), the prefork
pool with concurrency 4 and log level info. This project: its own client (``CeleryClient``) and
worker launcher with its default configuration (the compose prod worker's flags). Stock: a Celery
app with only broker and backend set, ``send_task`` in a loop, ``celery worker``.

A round times from the first submit until every result is in the backend, seen by the same
observer for both sides (MGET on the result keys, after the last submit). Rounds alternate which
side goes first, so drift on a shared machine hits both.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from bench.common import PYTHON, Figure, Process, Row, node, paired_ratio
from bench.stock_app import make_app
from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.tasks.celery.tasks import add
from tests.support.processes import Redis

ADD = add.name
RESULT_KEY = "celery-task-meta-{}"
Submit = Callable[[int], list[str]]


def wait_for_results(url: str, task_ids: list[str], timeout: float) -> None:
    """Return once every task's result key exists. Cheap while waiting (tasks finish roughly in
    submission order, so it watches the last one, one GET every 10 ms), then checks them all."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    pending = list(task_ids)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(task_ids)} tasks not done in {timeout} s")
        if client.exists(RESULT_KEY.format(pending[-1])):
            found = client.mget([RESULT_KEY.format(t) for t in pending])
            pending = [t for t, value in zip(pending, found, strict=True) if value is None]
        if pending:
            time.sleep(0.01)
    client.close()


def project_submit(url: str) -> Submit:
    client = build_celery_client(Settings(redis_url=url))

    def submit(n: int) -> list[str]:
        return client.submit_many(task_name=ADD, kwargs=[{"x": i, "y": 1} for i in range(n)])

    return submit


def stock_submit(url: str) -> Submit:
    app = make_app(url)

    def submit(n: int) -> list[str]:
        return [app.send_task(ADD, kwargs={"x": i, "y": 1}).id for i in range(n)]

    return submit


def project_worker(
    url: str, log: Path, concurrency: int, *, extra: dict[str, str] | None = None
) -> Process:
    """The worker launcher with the prod flags; ``extra``: more environment."""
    name = node("bench-project")
    env = {"APP_ENV": "local", "REDIS_URL": url, "WORKER_LIVENESS_FILE": str(log) + ".alive"}
    env.update(extra or {})
    cmd = [PYTHON, "services/run_celery_worker.py", "-Q", "default,slow", "-l", "info"]
    proc = Process([*cmd, "-n", name, "--concurrency", str(concurrency)], env, log)
    proc.wait_for(f"{name} ready.")
    return proc


def stock_worker(url: str, log: Path, concurrency: int) -> Process:
    name = node("bench-stock")
    cmd = [PYTHON, "-m", "celery", "-A", "bench.stock_app", "worker", "-l", "info"]
    cmd += ["--pool", "prefork", "--concurrency", str(concurrency), "-n", name]
    proc = Process(cmd, {"STOCK_REDIS_URL": url}, log)
    proc.wait_for(f"{name} ready.")
    return proc


class Side:
    def __init__(
        self,
        name: str,
        url: str,
        submit: Submit,
        start_worker: Callable[[str, Path, int], Process],
    ) -> None:
        self.name, self.url, self.submit, self.start_worker = name, url, submit, start_worker
        self.end_to_end: list[float] = []
        self.publish: list[float] = []

    def measure(self, n_tasks: int, workdir: Path, concurrency: int, round_no: int) -> None:
        redis.Redis.from_url(self.url).flushdb()
        worker = self.start_worker(self.url, workdir / f"{self.name}-{round_no}.log", concurrency)
        try:
            started = time.perf_counter()
            ids = self.submit(n_tasks)
            submitted = time.perf_counter()
            wait_for_results(self.url, ids, timeout=300)
            done = time.perf_counter()
        finally:
            worker.stop()
        self.publish.append(n_tasks / (submitted - started))
        self.end_to_end.append(n_tasks / (done - started))


def ceiling(server: Redis) -> dict[str, float]:
    """redis-benchmark LPUSH and RPOP on the same Redis: the broker's own limit."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(server.port), "-t", "lpush,rpop", "-n", "100000", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {}
    for line in out.replace("\r", "\n").splitlines():
        if "requests per second" in line:
            name, rest = line.split(":", 1)
            figures[name.strip()] = float(rest.split()[0])
    return figures


def run(
    server: Redis, workdir: Path, *, n_tasks: int, n_rounds: int, concurrency: int = 4
) -> list[Row]:
    ours = Side("project", server.url(1), project_submit(server.url(1)), project_worker)
    stock = Side("stock", server.url(2), stock_submit(server.url(2)), stock_worker)
    for i in range(n_rounds):
        for side in (ours, stock) if i % 2 else (stock, ours):
            side.measure(n_tasks, workdir, concurrency, i)
        print(
            f"  round {i + 1}: project {ours.end_to_end[-1]:,.0f} tasks/s, "
            f"stock {stock.end_to_end[-1]:,.0f} tasks/s",
            flush=True,
        )
    redis_ops = ceiling(server)
    e2e_ours, e2e_stock = Figure(tuple(ours.end_to_end)), Figure(tuple(stock.end_to_end))
    pub_ours, pub_stock = Figure(tuple(ours.publish)), Figure(tuple(stock.publish))
    what = f"{n_tasks:,} tasks, prefork, concurrency {concurrency}"
    rows = [
        Row(
            "1. end-to-end throughput",
            f"tasks/s submitted → result stored ({what})",
            e2e_ours.show(),
            e2e_stock.show(),
            "stock Celery",
            paired_ratio(e2e_ours, e2e_stock),
            "≥ 2.0x",
        ),
        Row(
            "1. end-to-end throughput",
            "publish rate, tasks/s (same runs)",
            pub_ours.show(),
            pub_stock.show(),
            "stock Celery",
            paired_ratio(pub_ours, pub_stock),
        ),
    ]
    for name, ops in redis_ops.items():
        rows.append(
            Row(
                "1. end-to-end throughput",
                f"physical ceiling: redis-benchmark {name} ops/s",
                f"{ops:,.0f}",
                f"{e2e_ours.median:,.0f}",
                "this project's tasks/s",
                ops / e2e_ours.median,
            )
        )
    return rows
