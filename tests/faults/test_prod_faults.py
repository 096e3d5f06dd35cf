"""Faults in the real prod stack at its shipped defaults (no shortened timeouts): a killed worker
container, `docker compose stop worker`, a rolling restart, and a Redis restart with AOF on its
volume. Counts are printed; nothing may be lost, and no task may complete twice."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from internal.config.setting import Settings
from internal.infra.redis import ORDER_ATTEMPTS_KEY, ORDERS_KEY
from tests.support.processes import wait_until
from tests.support.stack import Stack
from tests.support.stack_fixtures import start_prod_stack

pytestmark = pytest.mark.e2e

LEASE = Settings().lease_seconds
GRACE = Settings().shutdown_grace_seconds


@pytest.fixture(scope="module")
def stack(images: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The app and Redis: no fault here involves Prometheus (tests/e2e watches its alerts).
    s = start_prod_stack(
        tmp_path_factory, services=("api-prod", "worker-prod", "beat-prod", "flower-prod")
    )
    try:
        yield s
    finally:
        s.down()


def api(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port('api-prod', 8000)}"


def submit(stack: Stack, name: str, body: dict[str, Any]) -> str:
    r = httpx.post(f"{api(stack)}/api/v1/tasks/{name}", json=body, timeout=10)
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


def state(stack: Stack, task_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{api(stack)}/api/v1/tasks/{task_id}", timeout=10).json())


def wait_all(stack: Stack, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        states = [state(stack, i) for i in ids]
        return states if all(s["ready"] for s in states) else None

    return wait_until(done, timeout=timeout, interval=0.5, what=f"{len(ids)} tasks")


def redis_cli(stack: Stack, *args: str) -> str:
    cmd = 'REDISCLI_AUTH="$(cat /run/secrets/redis_password)" redis-cli "$@"'
    out = stack.compose("exec", "-T", "redis-prod", "sh", "-c", cmd, "redis-cli", *args)
    return out.stdout.strip()


def run_in_api(stack: Stack, code: str) -> list[str]:
    """Run Python inside the API container (the app's own client), return its words."""
    return stack.compose("exec", "-T", "api-prod", "python", "-c", code).stdout.split()


def schedule(stack: Stack, task: str, kwargs: list[dict[str, Any]], countdown: float) -> list[str]:
    """Submit with a countdown from inside the stack, as a service would (the public API has
    no countdown)."""
    code = (
        "from internal.celery_tasks import default_celery_client as c; "
        f"print(' '.join(c.submit(task_name={task!r}, kwargs=kw, countdown={countdown}).id "
        f"for kw in {kwargs!r}))"
    )
    return run_in_api(stack, code)


def states_in_api(stack: Stack, ids: list[str]) -> list[str]:
    """States of tasks read through the app's client (tasks not submitted through the API)."""
    code = (
        "from internal.celery_tasks import default_celery_client as c; "
        f"print(' '.join(c.status(t).state for t in {ids!r}))"
    )
    return run_in_api(stack, code)


def done_at(stack: Stack, ids: list[str]) -> list[float]:
    """When each task's result was stored (epoch seconds)."""
    code = (
        "from internal.celery_tasks import default_celery_client as c; "
        f"print(' '.join(str(c.status(t).date_done.timestamp()) for t in {ids!r}))"
    )
    return [float(t) for t in run_in_api(stack, code)]


def attempts_by_order(stack: Stack) -> dict[str, int]:
    flat = redis_cli(stack, "HGETALL", ORDER_ATTEMPTS_KEY).split()
    return {k: int(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


@pytest.mark.timeout(420)  # the first test of the module also starts the stack
def test_killed_worker_container_loses_no_task(stack: Stack) -> None:
    """SIGKILL of the worker container holding running, prefetched and ETA tasks: at the
    shipped lease, the running ones are back and done within 30 s of the kill plus their own
    work, the ETA ones run on time, and every task completes exactly once."""
    redis_cli(stack, "DEL", ORDERS_KEY, ORDER_ATTEMPTS_KEY)
    work = 8
    eta_in = 45
    eta_ids = schedule(stack, "tasks.record_order", [{"order_id": f"eta{i}"} for i in range(2)],
                       countdown=eta_in)  # fmt: skip
    eta = time.time() + eta_in
    ids = [
        submit(stack, "record_order", {"order_id": f"k{i}", "work_seconds": work}) for i in range(6)
    ]  # concurrency 4: four run, two wait prefetched in the worker
    # Running: their attempt is counted (STARTED is stored a moment before the task body runs).
    wait_until(lambda: len(attempts_by_order(stack)) == 4, timeout=60, what="four running tasks")
    running = sorted(attempts_by_order(stack))
    # Four running, two prefetched, two ETA: the worker holds (and leases) all eight.
    assert int(redis_cli(stack, "HLEN", "unacked")) == 8
    (worker,) = stack.container_ids("worker-prod")
    subprocess.run(["docker", "kill", "-s", "KILL", worker], check=True, capture_output=True)
    killed, killed_at = time.monotonic(), time.time()
    stack.compose("start", "worker-prod")
    states = wait_all(stack, ids, timeout=120)
    all_done = time.monotonic() - killed
    running_done = max(done_at(stack, [ids[int(order[1:])] for order in running])) - killed_at
    wait_until(lambda: set(states_in_api(stack, eta_ids)) == {"SUCCESS"},
               timeout=120, interval=2, what="the ETA tasks")  # fmt: skip
    eta_late = max(done_at(stack, eta_ids)) - eta
    effects = int(redis_cli(stack, "HLEN", ORDERS_KEY))
    attempts = attempts_by_order(stack)
    ok = sum(s["state"] == "SUCCESS" for s in states) + len(eta_ids)
    print(
        f"\nworker container SIGKILLed (lease {LEASE:.0f} s): submitted {len(ids) + 2}, "
        f"completed {ok}, lost {len(ids) + 2 - ok}, effects {effects}, attempts {attempts}; "
        f"running ones done {running_done:.1f} s after the kill ({work} s of work), "
        f"all six {all_done:.1f} s, ETA ones {eta_late:+.1f} s from their ETA"
    )
    assert ok == effects == len(ids) + 2
    assert sorted(attempts.values()) == [1, 1, 1, 1, 2, 2, 2, 2]  # four interrupted, once
    assert running_done < 30 + work
    assert -1 < eta_late < 5


@pytest.mark.timeout(300)
def test_rolling_restart_loses_and_duplicates_nothing(stack: Stack) -> None:
    """`up -d --force-recreate worker-prod` while tasks longer than the grace period run: the
    old worker hands them back when its grace is up, the new one runs them, each completes
    once; the short ones finish before the old worker exits."""
    redis_cli(stack, "DEL", ORDERS_KEY, ORDER_ATTEMPTS_KEY)
    long_ids = [
        submit(stack, "record_order", {"order_id": f"long{i}", "work_seconds": GRACE + 15})
        for i in range(2)
    ]
    short_ids = [
        submit(stack, "record_order", {"order_id": f"short{i}", "work_seconds": 3})
        for i in range(2)
    ]
    wait_until(lambda: all(state(stack, i)["state"] == "STARTED" for i in long_ids + short_ids),
               timeout=60, what="four running tasks")  # fmt: skip
    (old,) = stack.container_ids("worker-prod")
    started = time.monotonic()
    stack.compose("up", "-d", "--force-recreate", "--no-deps", "worker-prod", timeout=120)
    recreate_seconds = time.monotonic() - started
    inspect = subprocess.run(["docker", "inspect", old], capture_output=True, text=True)
    states = wait_all(stack, long_ids + short_ids, timeout=180)
    attempts = attempts_by_order(stack)
    effects = int(redis_cli(stack, "HLEN", ORDERS_KEY))
    print(
        f"\nrolling restart (grace {GRACE:.0f} s): recreated in {recreate_seconds:.1f} s; "
        f"completed {sum(s['state'] == 'SUCCESS' for s in states)} of {len(states)}, "
        f"effects {effects}, attempts {attempts}"
    )
    assert inspect.returncode != 0  # the old container is gone (removed, not left running)
    assert all(s["state"] == "SUCCESS" for s in states) and effects == len(states)
    # Short ones finished in the old worker; long ones were handed back once, at its deadline,
    # and never ran in two places (the old copy was cancelled before the message went back).
    assert attempts == {"short0": 1, "short1": 1, "long0": 2, "long1": 2}
    assert recreate_seconds < 30  # the old worker left by itself before compose's SIGKILL


def test_compose_stop_worker_finishes_running_tasks_and_keeps_queued(stack: Stack) -> None:
    # 10 s of work, well inside the grace: the signal (compose's own start-up, on a loaded CI
    # machine over 2 s) must reach the worker before any of the four running tasks ends, or
    # the worker rightly starts a queued one in its place.
    body = {"steps": 20, "step_seconds": 0.5}
    ids = [submit(stack, "long_report", body) for _ in range(7)]  # concurrency 4: 3 wait

    def four_running() -> set[str] | None:
        running = {i for i in ids if state(stack, i)["state"] == "PROGRESS"}
        return running if len(running) == 4 else None

    running = wait_until(four_running, timeout=60, what="four running tasks")
    stopping = time.monotonic()
    stack.compose("stop", "worker-prod", timeout=120)
    stop_seconds = time.monotonic() - stopping
    states = {i: state(stack, i) for i in ids}
    finished = {i for i, s in states.items() if s["state"] == "SUCCESS"}
    waiting = {i for i, s in states.items() if s["state"] == "PENDING"}
    print(
        f"\ncompose stop worker: stopped in {stop_seconds:.1f} s; {len(finished)} running tasks "
        f"finished, {len(waiting)} stayed queued"
    )
    assert finished == running and all(states[i]["result"]["complete"] for i in finished)
    assert waiting == set(ids) - running
    stack.compose("start", "worker-prod")
    after = wait_all(stack, ids, timeout=120)
    print(f"after start: {sum(s['state'] == 'SUCCESS' for s in after)} of {len(ids)} completed")
    assert all(s["state"] == "SUCCESS" for s in after)


def started_at(stack: Stack, service: str) -> str:
    (cid,) = stack.container_ids(service)
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout)[0]["State"]["StartedAt"])


def test_redis_restart_keeps_queued_and_scheduled_tasks(stack: Stack) -> None:
    others = ("api-prod", "beat-prod", "flower-prod")
    before = {s: started_at(stack, s) for s in others}
    stack.compose("stop", "worker-prod", timeout=120)
    queued = [submit(stack, "add", {"x": i, "y": 1}) for i in range(5)]
    scheduled = schedule(stack, "tasks.add", [{"x": i, "y": 0} for i in range(3)], countdown=15)
    time.sleep(1.5)  # appendfsync everysec

    stack.compose("stop", "redis-prod", timeout=60)
    down = httpx.get(f"{api(stack)}/readyz", timeout=10)
    stack.compose("start", "redis-prod")
    assert down.status_code == 503 and down.json()["checks"]["broker"].startswith("broker unavail")

    stack.compose("start", "worker-prod")
    wait_until(lambda: httpx.get(f"{api(stack)}/readyz", timeout=10).status_code == 200,
               timeout=90, what="the API to be ready again")  # fmt: skip
    results = wait_all(stack, queued, timeout=90)
    wait_until(
        lambda: set(states_in_api(stack, scheduled)) == {"SUCCESS"},
        timeout=90, interval=2, what="the scheduled tasks",
    )  # fmt: skip
    print(
        f"\nredis restart: queued {len(queued)} -> completed "
        f"{sum(s['state'] == 'SUCCESS' for s in results)}, scheduled {len(scheduled)} -> "
        f"completed {len(scheduled)}, lost 0; api/beat/flower restarted: "
        f"{[s for s in others if started_at(stack, s) != before[s]]}"
    )
    assert all(s["state"] == "SUCCESS" for s in results)
    assert {s: started_at(stack, s) for s in others} == before  # reconnected, not restarted
    stack.compose("up", "-d", "--wait", "--no-recreate", timeout=300)  # all healthy again
