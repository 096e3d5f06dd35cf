"""A task added in one place, its declaration beside its function, is routed to its queue,
exposed over HTTP (validated, documented), checked by the worker whoever sends it, and
scheduled by beat: nothing else is edited."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.tasks.celery import tasks as app_tasks
from pkg.celery_task import CeleryClient
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import Redis, free_port, wait_until

RAN = re.compile(r"Task tasks\.count_words\[[^\]]+\] succeeded")
NEW_TASK = """

@declare(
    "tasks.count_words",
    queue="reports",
    http=Http("Count the words of a text."),
    schedule=Periodic(1.0),
)
def count_words(
    text: Annotated[str, Field(min_length=1, max_length=100)] = "one two three",
) -> int:
    return len(text.split())
"""


def test_a_task_declared_in_one_place_is_routed_exposed_validated_and_scheduled(
    launch: LaunchFn, tree: Path, redis_server: Redis
) -> None:
    tasks_py = tree / "internal" / "tasks" / "celery" / "tasks.py"
    tasks_py.write_text(tasks_py.read_text() + NEW_TASK)  # the one place
    url = redis_server.url(5)
    store: redis.Redis = redis.Redis.from_url(url)
    store.flushdb()
    env = {"REDIS_URL": url}

    port = free_port()
    launch("run_api.py", "--port", str(port), env=env, cwd=tree)
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{api}/healthz").status_code == 200, timeout=30, what="the API")

    # Exposed, with the signature's constraints as the request body's schema.
    spec = httpx.get(f"{api}/openapi.json").json()
    assert spec["components"]["schemas"]["CountWordsBody"]["properties"]["text"]["maxLength"] == 100
    assert "Count the words" in spec["paths"]["/api/v1/tasks/count_words"]["post"]["description"]
    refused = httpx.post(f"{api}/api/v1/tasks/count_words", json={"text": ""})
    assert refused.status_code == 422 and "text" in refused.text

    # Routed: the message waits on the task's own queue (no worker yet).
    accepted = httpx.post(f"{api}/api/v1/tasks/count_words", json={"text": "a b c d"})
    assert accepted.status_code == 202, accepted.text
    assert store.llen("reports") == 1

    # The compose worker's WORKER_QUEUES=* includes the new queue; it runs the task.
    worker = start_worker(
        launch, node_name("one-place"), "-l", "info", env={**env, "WORKER_QUEUES": "*"}, cwd=tree
    )
    done = httpx.get(f"{accepted.json()['status_url']}?wait=20").json()
    assert (done["state"], done["result"]) == ("SUCCESS", 4)

    # Validated by the worker too, for a client that is not the API.
    client = build_celery_client(Settings(redis_url=url))
    sent = client.submit(task_name="tasks.count_words", kwargs={"text": 7}, queue="reports")
    sent.get(timeout=20, propagate=False)
    status = client.status(sent.id)
    assert status.state == "FAILURE"
    assert (
        status.error == "InvalidArguments: tasks.count_words: text: Input should be a valid string"
    )

    # Scheduled: beat sends it every second and the worker runs it.
    started, seen = time.monotonic(), len(worker.output)
    beat = launch("run_celery_beat.py", env=env, cwd=tree)
    wait_until(
        lambda: len(RAN.findall(worker.output[seen:])) >= 2,
        timeout=30,
        what="two of beat's runs of the new task",
    )
    assert "Sending due task count_words (tasks.count_words)" in beat.output
    print(f"\none place: beat's first two runs done {time.monotonic() - started:.1f} s after start")


def test_the_worker_checks_arguments_whoever_sends_them(client: CeleryClient, worker: str) -> None:
    """Regression (issue 11): only the API checked arguments; a message from any other client
    ran with whatever it carried (``add(1.5, 2)`` returned 3.5, ``long_report(steps=0)`` ran)."""
    sent: dict[str, tuple[Any, dict[str, Any]]] = {
        "tasks.add: x: Input should be a valid integer": (app_tasks.add, {"x": 1.5, "y": 2}),
        "tasks.long_report: steps: Input should be greater than or equal to 1": (
            app_tasks.long_report,
            {"steps": 0},
        ),
        "tasks.add: missing a required argument: 'y'": (app_tasks.add, {"x": 1}),
        "tasks.add: got an unexpected keyword argument 'z'": (
            app_tasks.add,
            {"x": 1, "y": 2, "z": 3},
        ),
    }
    results = {
        reason: client.submit(task_name=task.name, kwargs=kwargs)
        for reason, (task, kwargs) in sent.items()
    }
    for reason, result in results.items():
        result.get(timeout=20, propagate=False)
        status = client.status(result.id)
        assert (status.state, status.error) == ("FAILURE", f"InvalidArguments: {reason}")
