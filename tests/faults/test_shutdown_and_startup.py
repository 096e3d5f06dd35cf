"""Warm shutdown keeps every task; a broker missing at start is waited for, not crashed on."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from internal.infra.redis import ORDER_ATTEMPTS_KEY
from internal.tasks.celery import queues
from internal.tasks.celery import tasks as app_tasks
from tests.conftest import LaunchFn, node_name, start_worker
from tests.faults.conftest import Isolated
from tests.support.processes import Redis, free_port, wait_until


def test_sigterm_finishes_running_tasks_and_keeps_queued_ones(
    launch: LaunchFn, isolated: Isolated
) -> None:
    env = {"REDIS_URL": isolated.url}
    worker = start_worker(
        launch, node_name("warm"), "-l", "info", "-Q", "slow", "--concurrency=2", env=env
    )
    long = {"steps": 6, "step_seconds": 0.5}
    tasks = [
        isolated.client.submit(task_name=app_tasks.long_report.name, kwargs=long) for _ in range(5)
    ]
    wait_until(
        lambda: sum(t.state == "PROGRESS" for t in tasks) == 2, timeout=30, what="two running"
    )
    running = [t for t in tasks if t.state == "PROGRESS"]
    stopping = time.monotonic()
    assert worker.stop(signal.SIGTERM) == 0
    shutdown_seconds = time.monotonic() - stopping
    assert all(t.state == "SUCCESS" and t.result["complete"] for t in running)
    queued = isolated.store.llen(queues.SLOW_QUEUE)
    print(
        f"\nwarm shutdown: {len(running)} running finished in {shutdown_seconds:.1f} s, "
        f"{queued} stayed queued"
    )
    assert queued == 3

    start_worker(launch, node_name("after"), "-l", "info", "-Q", "slow", "--concurrency=2", env=env)
    results = [t.get(timeout=60) for t in tasks]
    print(
        f"after restart: {len(results)} of {len(tasks)} completed, lost {len(tasks) - len(results)}"
    )
    assert all(r["complete"] for r in results)


def test_a_stop_that_outlasts_the_grace_hands_running_tasks_back_at_once(
    launch: LaunchFn, isolated: Isolated
) -> None:
    grace = 4
    env = {"REDIS_URL": isolated.url, "SHUTDOWN_GRACE_SECONDS": str(grace)}
    worker = start_worker(
        launch, node_name("deadline"), "-l", "info", "-Q", "default", "--concurrency=2", env=env
    )
    tasks = [
        isolated.client.submit(
            task_name=app_tasks.record_order.name, kwargs={"order_id": f"d{i}", "work_seconds": 60}
        )
        for i in range(2)
    ]
    wait_until(lambda: all(t.state == "STARTED" for t in tasks), timeout=30, what="two running")
    stopping = time.monotonic()
    worker.stop(signal.SIGTERM, timeout=grace + 10)
    stop_seconds = time.monotonic() - stopping
    back = isolated.store.llen(queues.DEFAULT_QUEUE)
    print(
        f"\nstop past the grace ({grace} s): exited in {stop_seconds:.1f} s, {back} back in queue"
    )
    # Back in the queue when the worker is gone, not a lease later.
    assert back == 2 and isolated.store.hlen("unacked") == 0
    assert stop_seconds < grace + 5

    # A short grace for this one too: the test's teardown stops it mid-task.
    start_worker(launch, node_name("next"), "-l", "info", "-Q", "default", "--concurrency=2",
                 env=env)  # fmt: skip
    # Their state still says STARTED from the first run: the attempts tell the second one.
    wait_until(lambda: len(isolated.store.hgetall(ORDER_ATTEMPTS_KEY)) == 2 and all(
        n != "1" for n in isolated.store.hgetall(ORDER_ATTEMPTS_KEY).values()
    ), timeout=30, what="both running again")  # fmt: skip
    attempts = isolated.store.hgetall(ORDER_ATTEMPTS_KEY)
    assert attempts == {"d0": "2", "d1": "2"}  # interrupted once, running again, nowhere else


def test_services_wait_for_a_broker_that_is_not_there_yet(launch: LaunchFn, tmp_path: Path) -> None:
    port = free_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "HEARTBEAT_INTERVAL_SECONDS": "1"}
    name = node_name("patient")
    worker = launch("run_celery_worker.py", "-n", name, "-l", "info", "--concurrency=1", env=env)
    beat = launch("run_celery_beat.py", env=env)
    api_port, flower_port = free_port(), free_port()
    launch("run_api.py", "--port", str(api_port), env=env)
    flower = launch(
        "run_flower.py", f"--port={flower_port}", env={**env, "FLOWER_BASIC_AUTH": "u:p"}
    )
    api = f"http://127.0.0.1:{api_port}"
    wait_until(lambda: httpx.get(f"{api}/healthz").status_code == 200, timeout=30, what="api")
    # kombu names the transport it was given (ours, by import path) in the URL it logs.
    worker.wait_for_output(
        f"consumer: Cannot connect to pkg.redis_transport:Transport://:**@127.0.0.1:{port}/0",
        timeout=30,
    )
    flower.wait_for_output("Failed to capture events", timeout=30)
    assert httpx.get(f"{api}/readyz", timeout=10).status_code == 503
    time.sleep(3)
    for service in (worker, beat, flower):
        assert service.proc.poll() is None, f"{service.log_path.name} gave up"

    redis = Redis(tmp_path / "late-redis", port=port)
    try:
        worker.wait_for_output(f"{name} ready.", timeout=60)
        wait_until(
            lambda: httpx.get(f"{api}/readyz", timeout=10).status_code == 200,
            timeout=30,
            what="the API to become ready",
        )
        r = httpx.post(f"{api}/api/v1/tasks/add", json={"x": 1, "y": 2}, timeout=10)
        assert r.status_code == 202
        status_url = r.json()["status_url"]
        wait_until(
            lambda: httpx.get(status_url, timeout=10).json()["result"] == 3,
            timeout=30,
            what="the task",
        )
        beat.wait_for_output("Sending due task heartbeat", timeout=30)

        def flower_lists_worker() -> bool:
            r = httpx.get(f"http://127.0.0.1:{flower_port}/api/workers?refresh=1",
                          auth=("u", "p"), timeout=10)  # fmt: skip
            return r.status_code == 200 and name in r.json()

        wait_until(flower_lists_worker, timeout=30, what="flower to see the worker")
    finally:
        redis.stop()
