"""Redis restarts (AOF on disk): queued and scheduled tasks survive, every process reconnects."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import redis as redis_py

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.infra.redis import ORDER_ATTEMPTS_KEY, ORDERS_KEY
from internal.tasks.celery import tasks as app_tasks
from pkg.celery_task import TaskLimits
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support import tasks_for_tests
from tests.support.processes import Redis, free_port, wait_until

AOF = ("--appendonly", "yes", "--appendfsync", "everysec")


def test_tasks_survive_and_services_reconnect(launch: LaunchFn, tmp_path: Path) -> None:
    data = tmp_path / "redis-data"
    server = Redis(data, *AOF)
    url = server.url(0)
    client = build_celery_client(Settings(redis_url=url))
    env = {"REDIS_URL": url}
    worker = start_worker(
        launch, node_name("reconnect"), "-l", "info", "-Q", "default", "--concurrency=2", env=env
    )
    api_port = free_port()
    launch("run_api.py", "--port", str(api_port), env=env)
    api = f"http://127.0.0.1:{api_port}"
    wait_until(lambda: httpx.get(f"{api}/readyz", timeout=10).status_code == 200, timeout=30,
               what="the API ready")  # fmt: skip

    # Queued on `slow`, which no worker consumes yet; scheduled ones held by the worker (ETA).
    queued = [
        client.submit(task_name=app_tasks.long_report.name, kwargs={"steps": 1, "step_seconds": 0})
        for _ in range(5)
    ]
    eta_at = time.time() + 12
    scheduled = [
        client.submit(
            task_name=app_tasks.record_order.name, kwargs={"order_id": f"eta-{i}"}, countdown=12
        )
        for i in range(3)
    ]
    time.sleep(1.5)  # appendfsync everysec

    server.stop()
    down = httpx.get(f"{api}/readyz", timeout=10)
    post_down = httpx.post(f"{api}/api/v1/tasks/add", json={"x": 1, "y": 1}, timeout=10)
    server = Redis(data, *AOF, port=server.port)
    try:
        assert down.status_code == 503 and down.json()["checks"]["broker"] != "ok"
        assert post_down.status_code == 503
        assert "broker unavailable" in post_down.json()["detail"]

        # The API recovers without a restart; the worker reconnects and takes new work.
        wait_until(lambda: httpx.get(f"{api}/readyz", timeout=10).status_code == 200,
                   timeout=60, what="the API to recover")  # fmt: skip
        r = httpx.post(f"{api}/api/v1/tasks/add", json={"x": 2, "y": 2}, timeout=10)
        assert r.status_code == 202, r.text
        status_url = r.json()["status_url"]
        wait_until(lambda: httpx.get(status_url, timeout=10).json()["result"] == 4,
                   timeout=60, what="a task after the restart")  # fmt: skip

        start_worker(launch, node_name("slow"), "-l", "info", "-Q", "slow", env=env)
        results = [t.get(timeout=60) for t in queued]
        done = [t.get(timeout=90) for t in scheduled]
        finished_at = time.time()
        store = redis_py.Redis.from_url(url)
        print(
            f"\nredis restart: queued {len(queued)} -> completed {len(results)}; "
            f"scheduled {len(scheduled)} -> completed {len(done)} "
            f"({finished_at - eta_at:+.1f} s after their ETA); lost "
            f"{len(queued) + len(scheduled) - len(results) - len(done)}"
        )
        assert all(r["complete"] for r in results)
        assert store.hlen(ORDERS_KEY) == 3
        assert "Connection to broker lost" in worker.output
    finally:
        server.stop()


# Longer than a Sentinel failover takes at compose.sentinel.yaml's settings (about 7 s).
REDIS_DOWN_SECONDS = 9


def test_redis_restart_while_a_task_runs_runs_it_once(launch: LaunchFn, tmp_path: Path) -> None:
    """A late-ack task running while Redis restarts: it finishes once, its ack goes through
    after the reconnect, and the worker stays up and takes new tasks.

    A second task finishes while Redis is away: its result waits for Redis. Regression: the
    result backend gave up after 5 s, so that task ran and was acked, and its result was lost
    (found by bench/sentinel_failover.py, where a failover takes about 7 s)."""
    data = tmp_path / "redis-data"
    server = Redis(data, *AOF)
    url = server.url(0)
    client = build_celery_client(Settings(redis_url=url))
    worker = start_worker(
        launch, node_name("running"), "-l", "info", "-Q", "default", "--concurrency=2",
        "-I", tasks_for_tests.MODULE, env={"REDIS_URL": url},
    )  # fmt: skip
    running = client.submit(
        task_name=app_tasks.record_order.name,
        kwargs={"order_id": "during-restart", "work_seconds": REDIS_DOWN_SECONDS + 4},
    )
    ends_meanwhile = client.submit(task_name=tasks_for_tests.SLEEPS, args=(3,))
    wait_until(lambda: running.state == "STARTED", timeout=30, what="the task to start")
    time.sleep(1.5)  # appendfsync everysec
    server.stop()
    time.sleep(REDIS_DOWN_SECONDS)
    server = Redis(data, *AOF, port=server.port)
    try:
        store: redis_py.Redis = redis_py.Redis.from_url(url, decode_responses=True)
        assert running.get(timeout=60)["attempts"] == 1
        assert client.status(ends_meanwhile.id).result == 3
        after = client.submit(task_name=app_tasks.add.name, kwargs={"x": 2, "y": 3})
        assert after.get(timeout=60) == 5
        # Past a whole lease: had the running task's message been handed back, it would have
        # run again by now.
        time.sleep(TaskLimits().lease_seconds or 0)
        attempts = str(store.hget(ORDER_ATTEMPTS_KEY, "during-restart"))
        print(f"\nredis restart mid-task: attempts {attempts}, worker alive")
        assert attempts == "1"
        assert store.hlen("unacked") == 0
        assert worker.proc.poll() is None, worker.output[-3000:]
    finally:
        server.stop()
