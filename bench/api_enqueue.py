"""API enqueue: requests/s and latency of ``POST /api/v1/tasks/add`` against ``GET /healthz``,
on the same API process (the launcher, uvicorn) and the same load generator (wrk), in one run.

No worker runs, so only the API is measured: each POST validates the body, records the task id
and publishes the message to Redis. The queue is emptied between rounds.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import redis

from bench.common import PYTHON, Figure, Process, Row, paired_ratio
from tests.support.processes import REPO_ROOT, Redis, free_port, wait_until

WRK_SCRIPT = REPO_ROOT / "bench" / "wrk_report.lua"
ADD_BODY = json.dumps({"x": 2, "y": 3})


def wrk(url: str, *, body: str = "", seconds: int, connections: int) -> dict[str, float]:
    return wrk_report(wrk_started(url, body, seconds, connections=connections))


def wrk_started(
    url: str, body: str, seconds: int, cpus: set[int] | None = None, *, connections: int = 8
) -> subprocess.Popen[str]:
    """wrk under way against ``url`` (on ``cpus`` if given); its figures from wrk_report."""
    on_cpus = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    return subprocess.Popen(
        [*on_cpus, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(WRK_SCRIPT), url],
        env={**os.environ, "WRK_BODY": body},
        stdout=subprocess.PIPE,
        text=True,
    )


def wrk_report(load: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = load.communicate()
    if load.returncode:
        raise RuntimeError(f"wrk failed ({load.args!r}): exit {load.returncode}")
    figures = json.loads(out.strip().splitlines()[-1])
    if figures["non2xx"] or figures["errors"]:
        raise RuntimeError(f"wrk ({load.args!r}) saw failures: {figures}")
    return dict(figures)


def start_api(redis_url: str, log: Path) -> tuple[Process, str]:
    port = free_port()
    env = {"APP_ENV": "local", "REDIS_URL": redis_url}
    proc = Process(
        [PYTHON, "services/run_api.py", "--port", str(port), "--log-level", "warning"], env, log
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30, what="the API")
    return proc, url


def run(
    server: Redis, workdir: Path, *, n_rounds: int, seconds: int = 5, connections: int = 16
) -> list[Row]:
    db = server.url(3)
    api, url = start_api(db, workdir / "api.log")
    post: list[dict[str, float]] = []
    health: list[dict[str, float]] = []
    try:
        wrk(f"{url}/healthz", seconds=1, connections=connections)  # warm up both paths
        wrk(f"{url}/api/v1/tasks/add", body=ADD_BODY, seconds=1, connections=connections)
        for i in range(n_rounds):
            redis.Redis.from_url(db).flushdb()
            health.append(wrk(f"{url}/healthz", seconds=seconds, connections=connections))
            post.append(
                wrk(
                    f"{url}/api/v1/tasks/add",
                    body=ADD_BODY,
                    seconds=seconds,
                    connections=connections,
                )
            )
            print(f"  round {i + 1}: POST {rps(post[-1]):,.0f} req/s, ", end="")
            print(f"/healthz {rps(health[-1]):,.0f} req/s", flush=True)
    finally:
        api.stop()
        redis.Redis.from_url(db).flushdb()  # the tasks nobody ran
    post_rps, health_rps = Figure(tuple(map(rps, post))), Figure(tuple(map(rps, health)))
    post_p50 = Figure(tuple(f["p50_us"] / 1000 for f in post))
    post_p99 = Figure(tuple(f["p99_us"] / 1000 for f in post))
    health_p50 = Figure(tuple(f["p50_us"] / 1000 for f in health))
    health_p99 = Figure(tuple(f["p99_us"] / 1000 for f in health))
    load = f"wrk, {connections} connections, {seconds} s a round"
    ms = "{:.2f}"
    return [
        Row(
            "2. API enqueue",
            f"POST /api/v1/tasks/add req/s ({load})",
            post_rps.show(),
            health_rps.show(),
            "GET /healthz",
            paired_ratio(post_rps, health_rps),
            "≥ 0.50x",
        ),
        Row(
            "2. API enqueue",
            "POST latency p50, ms",
            post_p50.show(ms),
            health_p50.show(ms),
            "GET /healthz",
            post_p50.median / health_p50.median,
        ),
        Row(
            "2. API enqueue",
            "POST latency p99, ms",
            post_p99.show(ms),
            health_p99.show(ms),
            "GET /healthz",
            post_p99.median / health_p99.median,
        ),
    ]


def rps(figures: dict[str, float]) -> float:
    return figures["requests"] / figures["seconds"]
