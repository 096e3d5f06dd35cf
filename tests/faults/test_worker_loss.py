"""Workers killed mid-task: every interrupted task is redelivered and completes, once in effect."""

from __future__ import annotations

import json
import signal
import time

import psutil
from celery.result import AsyncResult

from internal.infra.redis import DEAD_LETTERS_KEY, ORDER_ATTEMPTS_KEY, ORDERS_KEY
from internal.tasks.celery import tasks as app_tasks
from tests.conftest import LaunchFn, node_name, start_worker
from tests.faults.conftest import Isolated
from tests.support import tasks_for_tests
from tests.support.processes import wait_until

N_TASKS = 8


def submit_orders(iso: Isolated, n: int, work_seconds: float) -> list[AsyncResult]:
    return [
        iso.client.submit(
            task_name=app_tasks.record_order.name,
            kwargs={"order_id": f"order-{i}", "work_seconds": work_seconds},
        )
        for i in range(n)
    ]


def started(results: list[AsyncResult]) -> int:
    return sum(r.state == "STARTED" for r in results)


def report(fault: str, iso: Isolated, results: list[AsyncResult]) -> tuple[int, int, int]:
    done = [r.get(timeout=90) for r in results]
    effects = iso.store.hgetall(ORDERS_KEY)
    attempts = sum(int(v) for v in iso.store.hgetall(ORDER_ATTEMPTS_KEY).values())
    lost = len(results) - len(done)
    print(
        f"\n{fault}: submitted {len(results)}, completed {len(done)}, lost {lost}, "
        f"effects recorded {len(effects)}, attempts {attempts}"
    )
    assert {json.loads(v)["order_id"] for v in effects.values()} == {
        f"order-{i}" for i in range(len(results))
    }
    return len(done), len(effects), attempts


def test_sigkill_of_pool_children_loses_no_task(launch: LaunchFn, isolated: Isolated) -> None:
    worker = start_worker(
        launch, node_name("kill-child"), "-l", "info", "-Q", "default", "--concurrency=2",
        env={"REDIS_URL": isolated.url},
    )  # fmt: skip
    # Long enough that a task seen STARTED is still running when its process is killed.
    results = submit_orders(isolated, N_TASKS, work_seconds=3.0)
    wait_until(lambda: started(results) >= 2, timeout=30, what="two running tasks")
    kills = 0
    for child in psutil.Process(worker.proc.pid).children():
        child.send_signal(signal.SIGKILL)
        kills += 1
    completed, effects, attempts = report(f"pool children SIGKILLed ({kills})", isolated, results)
    assert completed == effects == N_TASKS
    assert attempts > N_TASKS, "no task was interrupted: the test did not test anything"


def test_sigkill_of_the_whole_worker_loses_no_task(launch: LaunchFn, isolated: Isolated) -> None:
    # A short visibility timeout so the unacked tasks of the dead worker come back quickly.
    env = {
        "REDIS_URL": isolated.url,
        "VISIBILITY_TIMEOUT": "6",
        "TASK_TIME_LIMIT": "5",
        "TASK_SOFT_TIME_LIMIT": "4",
    }
    first = start_worker(
        launch, node_name("kill-all"), "-l", "info", "-Q", "default", "--concurrency=2", env=env
    )
    results = submit_orders(isolated, N_TASKS, work_seconds=1.0)
    wait_until(lambda: started(results) >= 2, timeout=30, what="two running tasks")
    main = psutil.Process(first.proc.pid)
    victims = [main, *main.children(recursive=True)]
    for proc in victims:
        proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    killed_at = time.monotonic()
    start_worker(
        launch, node_name("rescuer"), "-l", "info", "-Q", "default", "--concurrency=2", env=env
    )
    completed, effects, attempts = report("whole worker SIGKILLed", isolated, results)
    print(f"redelivered and finished {time.monotonic() - killed_at:.1f} s after the kill")
    assert completed == effects == N_TASKS
    assert attempts > N_TASKS


def test_a_task_that_always_kills_its_worker_is_capped(
    launch: LaunchFn, isolated: Isolated
) -> None:
    worker = start_worker(
        launch, node_name("poison"), "-l", "info", "-Q", "default", "--concurrency=1",
        "-I", tasks_for_tests.MODULE, env={"REDIS_URL": isolated.url},
    )  # fmt: skip
    pill = isolated.client.submit(task_name=tasks_for_tests.POISON_PILL)
    wait_until(lambda: pill.state == "FAILURE", timeout=60, what="the poison pill to fail")
    runs = worker.output.count(f"Task {tasks_for_tests.POISON_PILL}[{pill.id}] received")
    print(f"\npoison pill: ran {runs} times, then FAILURE: {pill.result!r}")
    assert runs == 3  # the first run and max_retries=2 retries
    assert "WorkerLostError" in type(pill.result).__name__
    # Kept as a dead letter (issue 12), with its attempts.
    kept = json.loads(str(isolated.store.hget(f"{DEAD_LETTERS_KEY}:entries", pill.id)))
    assert kept["error"].startswith("WorkerLostError") and kept["attempts"] == 3
    # The worker survived and still works.
    after = isolated.client.submit(task_name=app_tasks.add.name, kwargs={"x": 1, "y": 1})
    assert after.get(timeout=30) == 2
