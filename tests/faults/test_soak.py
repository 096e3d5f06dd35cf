"""A bounded soak: 50 concurrent API clients submit mixed tasks for SOAK_SECONDS (30 by default,
to keep CI within its time; SOAK_SECONDS=300 for the full five minutes) with one worker restart
in the middle. Nothing may be lost, the API may not answer 5xx, and memory must stay flat. The
figures are printed."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import Launched, Redis, free_port, wait_until

CLIENTS = 50
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
PAUSE = 0.1  # between one client's requests: a steady load, not a flood


def rss_mb(proc: psutil.Process) -> float:
    procs = [proc, *proc.children(recursive=True)]
    return float(sum(p.memory_info().rss for p in procs if p.is_running())) / 2**20


def pick_task(rng: random.Random, n: int) -> tuple[str, dict[str, object]]:
    roll = rng.random()
    if roll < 0.7:
        return "add", {"x": n, "y": 1}
    if roll < 0.95:
        return "record_order", {"order_id": f"soak-{n}"}
    return "long_report", {"steps": 2, "step_seconds": 0.05}


async def client_loop(
    url: str, seed: int, until: float, ids: list[str], statuses: Counter[int]
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        n = seed * 1_000_000
        while time.monotonic() < until:
            n += 1
            name, body = pick_task(rng, n)
            try:
                r = await http.post(f"/api/v1/tasks/{name}", json=body)
            except httpx.HTTPError:
                statuses[-1] += 1
                continue
            statuses[r.status_code] += 1
            if r.status_code == 202:
                ids.append(r.json()["task_id"])
            await asyncio.sleep(PAUSE)


def test_soak(launch: LaunchFn, tmp_path: Path) -> None:
    server = Redis(tmp_path / "soak-redis")
    url = server.url(0)
    env = {"REDIS_URL": url}
    client = build_celery_client(Settings(redis_url=url))
    try:
        worker = start_worker(
            launch, node_name("soak"), "-l", "info", "-Q", "default,slow", env=env
        )
        port = free_port()
        api_proc = launch("run_api.py", "--port", str(port), "--log-level", "warning", env=env)
        api = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{api}/healthz").status_code == 200, timeout=30,
                   what="api")  # fmt: skip

        ids: list[str] = []
        statuses: Counter[int] = Counter()
        memory: dict[str, list[float]] = {"api": [], "worker": [], "redis": []}

        def sample(current_worker: Launched) -> None:
            memory["api"].append(rss_mb(psutil.Process(api_proc.proc.pid)))
            memory["worker"].append(rss_mb(psutil.Process(current_worker.proc.pid)))
            memory["redis"].append(rss_mb(psutil.Process(server.proc.pid)))

        async def drive() -> Launched:
            nonlocal worker
            until = time.monotonic() + SOAK_SECONDS
            load = [
                asyncio.create_task(client_loop(api, seed, until, ids, statuses))
                for seed in range(1, CLIENTS + 1)
            ]
            await asyncio.sleep(min(10, SOAK_SECONDS / 4))
            sample(worker)  # after warm-up
            await asyncio.sleep(SOAK_SECONDS / 2 - min(10, SOAK_SECONDS / 4))
            # One worker restart in the middle: warm shutdown, then a new worker.
            await asyncio.to_thread(worker.stop, signal.SIGTERM)
            worker = await asyncio.to_thread(
                start_worker, launch, node_name("soak-2"), "-l", "info", "-Q", "default,slow",
                env=env,
            )  # fmt: skip
            await asyncio.gather(*load)
            return worker

        started = time.monotonic()
        worker = asyncio.run(drive())
        elapsed = time.monotonic() - started

        # Every task, not only the last ones: a message handed back at the worker restart
        # (a lease later) may finish after the newest ones.
        unfinished = set(ids)

        def all_done() -> bool:
            unfinished.difference_update([i for i in unfinished if client.status(i).ready])
            return not unfinished

        wait_until(all_done, timeout=300, interval=1, what="the backlog to drain")
        states = Counter(client.status(i).state for i in ids)
        sample(worker)
    finally:
        server.stop()

    submitted = len(ids)
    lost = submitted - states["SUCCESS"]
    server_errors = sum(v for k, v in statuses.items() if k >= 500)
    print(
        f"\nsoak {SOAK_SECONDS:.0f} s, {CLIENTS} clients: submitted {submitted} "
        f"({submitted / elapsed:.0f}/s), completed {states['SUCCESS']}, lost {lost}, "
        f"states {dict(states)}, HTTP {dict(statuses)}"
    )
    for name, (before, after) in memory.items():
        print(f"  {name} RSS: {before:.0f} MB after warm-up -> {after:.0f} MB at the end")
    assert submitted > 0
    assert lost == 0
    assert server_errors == 0 and statuses[-1] == 0
    assert memory["api"][1] < memory["api"][0] * 1.5 + 20
