"""Task events (what Flower's task list and metrics are made of), read off Redis as Flower
would: every task's events arrive, in a handful of messages rather than one per loop turn.

Regression (issue 12): Celery published its buffer of task events at every event-loop turn
of the worker, about one PUBLISH round trip per event (27% of the worker's main process with
events on); ``pkg/task_events.py`` publishes it at most every 0.2 s. And once the buffer held
24 events (Celery's limit), a PUBLISH the main process waits on every eight tasks under load;
it now holds up to 500."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter

import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import Redis, wait_until

TASKS = 300


def decode(message: bytes) -> list[dict[str, object]]:
    """The events in one message kombu published on the events exchange."""
    envelope = json.loads(message)
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    events = json.loads(body)
    return events if isinstance(events, list) else [events]


def test_every_task_event_arrives_in_few_messages(launch: LaunchFn, redis_server: Redis) -> None:
    url = redis_server.url(12)
    redis.Redis.from_url(url).flushdb()
    start_worker(launch, node_name("events"), "-l", "info", env={
        "REDIS_URL": url, "WORKER_TASK_EVENTS": "true",
    })  # fmt: skip
    messages: Counter[str] = Counter()
    events: Counter[str] = Counter()
    largest = 0
    listener = redis.Redis.from_url(url).pubsub()  # type: ignore[no-untyped-call]
    listener.psubscribe("/12.celeryev/task*")
    stop = threading.Event()

    def listen() -> None:
        nonlocal largest
        while not stop.is_set():
            message = listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message:
                messages[message["channel"].decode()] += 1
                largest = max(largest, len(message["data"]))
                events.update(str(e["type"]) for e in decode(message["data"]))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    client = build_celery_client(Settings(redis_url=url))
    ids = client.submit_many(task_name="tasks.add", kwargs=[{"x": i, "y": 1} for i in range(TASKS)])
    wait_until(lambda: client.status(ids[-1]).ready, timeout=60, what="the tasks to run")
    wait_until(lambda: events["task-succeeded"] >= TASKS, timeout=10, what="every event")
    time.sleep(0.5)  # nothing more arrives
    stop.set()
    thread.join(timeout=5)
    listener.close()
    sent = sum(messages.values())
    print(
        f"\ntask events: {dict(events)} in {sent} messages {dict(messages)}, "
        f"the largest {largest:,} bytes"
    )
    assert events["task-received"] == events["task-succeeded"] == TASKS
    # The 900 events of 300 tasks in a message every 0.2 s: fewer than the 38 a buffer of 24
    # events forces, and far fewer than one for each turn of the worker's loop.
    assert sent < 3 * TASKS / 24, sent
