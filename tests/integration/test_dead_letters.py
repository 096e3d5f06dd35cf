"""Dead letters with a real worker and the real API: a task that fails for good (retries
exhausted, hard time limit, refused arguments) is listed with what it needs to be replayed;
replayed, it runs again under a new id and succeeds; discarded, it is gone. (The poison-pill
cap: tests/faults/test_worker_loss.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.tasks.celery import tasks as app_tasks
from pkg.celery_task import CeleryClient
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support import tasks_for_tests
from tests.support.processes import Redis, free_port, wait_until

LETTERS = "/api/v1/dead-letters"


@pytest.fixture
def stack(launch: LaunchFn, redis_server: Redis) -> Iterator[tuple[str, CeleryClient, redis.Redis]]:
    """A worker with the test tasks and the API, on a Redis database of their own."""
    url = redis_server.url(4)
    store = redis.Redis.from_url(url, decode_responses=True)
    store.flushdb()
    env = {"REDIS_URL": url}
    start_worker(
        launch, node_name("dead"), "-l", "info", "-Q", "default", "--concurrency=2",
        "-I", tasks_for_tests.MODULE, env=env,
    )  # fmt: skip
    port = free_port()
    launch("run_api.py", "--port", str(port), env=env)
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{api}/healthz").status_code == 200, timeout=30, what="the API")
    yield api, build_celery_client(Settings(redis_url=url)), store
    store.flushdb()
    store.close()


def letter(api: str, task_id: str) -> dict[str, object]:
    answer = httpx.get(f"{api}{LETTERS}/{task_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_retries_exhausted_are_listed_then_replayed_to_success(
    stack: tuple[str, CeleryClient, redis.Redis],
) -> None:
    api, client, store = stack
    store.set(tasks_for_tests.DEPENDENCY_DOWN_KEY, "1")
    failed = client.submit(task_name=tasks_for_tests.NEEDS_DEPENDENCY)
    failed.get(timeout=30, propagate=False)
    assert failed.state == "FAILURE"

    page = httpx.get(f"{api}{LETTERS}").json()
    assert page["total"] == 1 and [item["id"] for item in page["items"]] == [failed.id]
    kept = letter(api, failed.id)
    assert kept["task_name"] == tasks_for_tests.NEEDS_DEPENDENCY
    assert (kept["error"], kept["attempts"]) == ("ConnectionError: dependency down", 3)
    assert (kept["args"], kept["kwargs"], kept["queue"]) == ([], {}, "default")
    assert "raise ConnectionError" in str(kept["traceback"])

    store.delete(tasks_for_tests.DEPENDENCY_DOWN_KEY)  # the dependency is back
    replayed = httpx.post(f"{api}{LETTERS}/{failed.id}/replay")
    assert replayed.status_code == 202, replayed.text
    new = replayed.json()
    assert new["replay_of"] == failed.id and new["task_id"] != failed.id
    done = httpx.get(f"{new['status_url']}?wait=20").json()
    assert (done["state"], done["result"], done["replay_of"]) == ("SUCCESS", "done", failed.id)
    assert httpx.get(f"{api}{LETTERS}/{failed.id}").status_code == 404
    assert httpx.post(f"{api}{LETTERS}/{failed.id}/replay").status_code == 404


def test_a_hard_time_limit_and_refused_arguments_are_listed_and_discard_removes(
    stack: tuple[str, CeleryClient, redis.Redis],
) -> None:
    api, client, _ = stack
    overran = client.submit(task_name=tasks_for_tests.OVERRUNS)
    refused = client.submit(task_name=app_tasks.add.name, kwargs={"x": 1.5, "y": 2})
    for result in (overran, refused):
        result.get(timeout=30, propagate=False)
    wait_until(
        lambda: httpx.get(f"{api}{LETTERS}").json()["total"] == 2, timeout=10, what="2 letters"
    )
    assert str(letter(api, overran.id)["error"]).startswith("TimeLimitExceeded")
    assert letter(api, refused.id)["error"] == (
        "InvalidArguments: tasks.add: x: Input should be a valid integer"
    )
    assert httpx.delete(f"{api}{LETTERS}/{refused.id}").status_code == 204
    assert httpx.delete(f"{api}{LETTERS}/{refused.id}").status_code == 404
    assert [item["id"] for item in httpx.get(f"{api}{LETTERS}").json()["items"]] == [overran.id]
