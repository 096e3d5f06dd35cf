"""Round trip at low load: one task at a time, from submit until its result is visible.

This project: ``POST /api/v1/tasks/add`` then ``GET /api/v1/tasks/{id}?wait=5`` (the API's long
poll answers as soon as the worker stores the result), through the API launcher and the
project's worker. Baseline, same run and Redis: stock Celery, ``add.delay(...).get()`` against a
stock worker (``get`` waits on the result's pub/sub channel too). Prefork, concurrency 4, both.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from bench.api_enqueue import start_api
from bench.common import Figure, Row, percentile
from bench.stock_app import make_app
from bench.throughput import project_worker, stock_worker
from tests.support.processes import Redis


def api_round_trips(url: str, n: int) -> list[float]:
    samples = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for i in range(n):
            started = time.perf_counter()
            r = http.post("/api/v1/tasks/add", json={"x": i, "y": 1})
            state = http.get(f"/api/v1/tasks/{r.json()['task_id']}", params={"wait": 5}).json()
            samples.append(time.perf_counter() - started)
            if state["result"] != i + 1:
                raise RuntimeError(f"unexpected answer: {state}")
    return samples


def stock_round_trips(url: str, n: int) -> list[float]:
    add = make_app(url).tasks["tasks.add"]
    samples = []
    for i in range(n):
        started = time.perf_counter()
        result = add.delay(i, 1).get(timeout=10)
        samples.append(time.perf_counter() - started)
        if result != i + 1:
            raise RuntimeError(f"unexpected answer: {result}")
    return samples


def run(server: Redis, workdir: Path, *, n_rounds: int, n_tasks: int = 300) -> list[Row]:
    ours: list[list[float]] = []
    stock: list[list[float]] = []
    worker = project_worker(server.url(5), workdir / "rt-worker.log", 4)
    api, url = start_api(server.url(5), workdir / "rt-api.log")
    try:
        api_round_trips(url, 50)  # warm up: connections, imports, pool processes
        for _ in range(n_rounds):
            ours.append(api_round_trips(url, n_tasks))
    finally:
        api.stop()
        worker.stop()
    worker = stock_worker(server.url(6), workdir / "rt-stock.log", 4)
    try:
        stock_round_trips(server.url(6), 50)
        for _ in range(n_rounds):
            stock.append(stock_round_trips(server.url(6), n_tasks))
    finally:
        worker.stop()
    rows = []
    for p, target in ((50, "≤ 5 ms"), (99, "≤ 20 ms")):
        mine = Figure(tuple(1000 * percentile(s, p) for s in ours))
        base = Figure(tuple(1000 * percentile(s, p) for s in stock))
        rows.append(
            Row(
                "3. round trip, low load",
                f"p{p} ms, submit → result via the API ({n_tasks} tasks a round, one at a time)",
                mine.show("{:.2f}"),
                base.show("{:.2f}"),
                "stock Celery delay().get()",
                mine.median / base.median,
                target,
            )
        )
    return rows
