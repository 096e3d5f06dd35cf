"""Faults in the real prod stack: a killed worker container, `docker compose stop worker`, and
a Redis restart with AOF on its volume. Counts are printed; nothing may be lost."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from internal.infra.redis import ORDER_ATTEMPTS_KEY, ORDERS_KEY
from tests.support.processes import wait_until
from tests.support.stack import Stack
from tests.support.stack_fixtures import start_prod_stack

pytestmark = pytest.mark.e2e

# A short visibility timeout, so tasks of a killed worker come back within the test.
FAULT_SETTINGS = "VISIBILITY_TIMEOUT=20\nTASK_TIME_LIMIT=15\nTASK_SOFT_TIME_LIMIT=12\n"


@pytest.fixture(scope="module")
def stack(images: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = start_prod_stack(tmp_path_factory, FAULT_SETTINGS)
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


def test_killed_worker_container_loses_no_task(stack: Stack) -> None:
    redis_cli(stack, "DEL", ORDERS_KEY, ORDER_ATTEMPTS_KEY)
    ids = [
        submit(stack, "record_order", {"order_id": f"k{i}", "work_seconds": 2}) for i in range(6)
    ]
    wait_until(lambda: sum(state(stack, i)["state"] == "STARTED" for i in ids) >= 2,
               timeout=60, what="running tasks")  # fmt: skip
    (worker,) = stack.container_ids("worker-prod")
    subprocess.run(["docker", "kill", "-s", "KILL", worker], check=True, capture_output=True)
    killed = time.monotonic()
    stack.compose("start", "worker-prod")
    states = wait_all(stack, ids, timeout=120)
    effects = int(redis_cli(stack, "HLEN", ORDERS_KEY))
    attempts = sum(int(v) for v in redis_cli(stack, "HVALS", ORDER_ATTEMPTS_KEY).split())
    ok = sum(s["state"] == "SUCCESS" for s in states)
    print(
        f"\nworker container SIGKILLed: submitted {len(ids)}, completed {ok}, lost "
        f"{len(ids) - ok}, effects {effects}, attempts {attempts}, all done "
        f"{time.monotonic() - killed:.1f} s after the kill"
    )
    assert ok == effects == len(ids)
    assert attempts > len(ids)


def test_compose_stop_worker_finishes_running_tasks_and_keeps_queued(stack: Stack) -> None:
    body = {"steps": 6, "step_seconds": 0.5}
    ids = [submit(stack, "long_report", body) for _ in range(7)]  # concurrency 4: 3 wait
    wait_until(lambda: sum(state(stack, i)["state"] == "PROGRESS" for i in ids) == 4,
               timeout=60, what="four running tasks")  # fmt: skip
    stopping = time.monotonic()
    stack.compose("stop", "worker-prod", timeout=120)
    stop_seconds = time.monotonic() - stopping
    states = [state(stack, i) for i in ids]
    finished = [s for s in states if s["state"] == "SUCCESS"]
    waiting = [s for s in states if s["state"] == "PENDING"]
    print(
        f"\ncompose stop worker: stopped in {stop_seconds:.1f} s; {len(finished)} running tasks "
        f"finished, {len(waiting)} stayed queued"
    )
    assert len(finished) == 4 and all(s["result"]["complete"] for s in finished)
    assert len(waiting) == 3
    stack.compose("start", "worker-prod")
    states = wait_all(stack, ids, timeout=120)
    print(f"after start: {sum(s['state'] == 'SUCCESS' for s in states)} of {len(ids)} completed")
    assert all(s["state"] == "SUCCESS" for s in states)


def started_at(stack: Stack, service: str) -> str:
    (cid,) = stack.container_ids(service)
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout)[0]["State"]["StartedAt"])


def test_redis_restart_keeps_queued_and_scheduled_tasks(stack: Stack) -> None:
    others = ("api-prod", "beat-prod", "flower-prod")
    before = {s: started_at(stack, s) for s in others}
    stack.compose("stop", "worker-prod", timeout=120)
    queued = [submit(stack, "add", {"x": i, "y": 1}) for i in range(5)]
    submit_eta = (
        "from internal.celery_tasks import default_celery_client as c; "
        "print(' '.join(c.submit(task_name='tasks.add', kwargs={'x': i, 'y': 0}, countdown=15).id"
        " for i in range(3)))"
    )  # the public API has no countdown: schedule from inside the stack, as a service would
    scheduled = stack.compose("exec", "-T", "api-prod", "python", "-c", submit_eta).stdout.split()
    time.sleep(1.5)  # appendfsync everysec

    stack.compose("stop", "redis-prod", timeout=60)
    down = httpx.get(f"{api(stack)}/readyz", timeout=10)
    stack.compose("start", "redis-prod")
    assert down.status_code == 503 and down.json()["checks"]["broker"].startswith("broker unavail")

    stack.compose("start", "worker-prod")
    wait_until(lambda: httpx.get(f"{api(stack)}/readyz", timeout=10).status_code == 200,
               timeout=90, what="the API to be ready again")  # fmt: skip
    results = wait_all(stack, queued, timeout=90)
    read_states = (
        "from internal.celery_tasks import default_celery_client as c; "
        f"print(' '.join(c.status(t).state for t in {scheduled!r}))"
    )
    wait_until(
        lambda: set(
            stack.compose("exec", "-T", "api-prod", "python", "-c", read_states).stdout.split()
        ) == {"SUCCESS"},
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
