"""Example tasks, each a pattern to copy. All are idempotent: delivery is at-least-once
(late ack), so a task may run again after a worker dies mid-task.

Each task is declared once, here (``declare``): its name on the wire, its queue, whether the
API exposes it and its schedule. The typed signature is the arguments' contract: the API
validates request bodies with it and the worker checks every call against it, so state each
constraint in the annotation (``Annotated[int, Field(ge=1)]``)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from pydantic import Field

from internal.infra.redis import HEARTBEAT_RAN_KEY, ORDER_ATTEMPTS_KEY, ORDERS_KEY, get_redis
from internal.tasks.celery.queues import SLOW_QUEUE
from pkg.task_catalog import Http, Periodic, declare

logger = get_task_logger(__name__)


class TransientError(Exception):
    """A failure worth retrying (a timeout, a 503 from a dependency)."""


Addend = Annotated[int, Field(ge=-(10**12), le=10**12)]


@declare("tasks.add", http=Http("Add two integers (a quick task)."))
def add(
    x: Annotated[Addend, Field(description="First addend")],
    y: Annotated[Addend, Field(description="Second addend")],
) -> int:
    """Quick task: pure, so running it twice is harmless."""
    return x + y


# Tasks that run for a while report STARTED (track_started): one extra result write, worth it
# only when a caller may look while the task runs. Quick tasks go straight to SUCCESS.
@declare(
    "tasks.long_report",
    queue=SLOW_QUEUE,
    http=Http("A long task on the `slow` queue that reports its progress."),
    bind=True,
    track_started=True,
    soft_time_limit=600,
    time_limit=660,
)
def long_report(
    self: Task,
    steps: Annotated[int, Field(ge=1, le=1000, description="How many steps to run")] = 10,
    step_seconds: Annotated[float, Field(ge=0, le=60, description="Seconds per step")] = 0.5,
) -> dict[str, Any]:
    """Long task: reports PROGRESS with a percent after every step and stops cleanly at its soft
    time limit, returning what it finished instead of being killed mid-write."""
    started = time.time()
    done = 0
    try:
        for done in range(1, steps + 1):
            time.sleep(step_seconds)
            self.update_state(
                state="PROGRESS",
                meta={"current": done, "total": steps, "percent": round(100 * done / steps, 1)},
            )
    except SoftTimeLimitExceeded:
        logger.warning("long_report %s hit its soft time limit at step %d", self.request.id, done)
        return {"steps_done": done - 1, "total": steps, "complete": False}
    return {"steps_done": done, "total": steps, "complete": True, "seconds": time.time() - started}


@declare(
    "tasks.flaky_fetch",
    http=Http("Fails transiently `fail_times` times, retried with exponential backoff."),
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=1,  # 1 s, 2 s, 4 s, ... between attempts
    retry_backoff_max=30,  # never wait more than 30 s between attempts
    retry_jitter=True,  # spread retries so failed tasks do not stampede a dependency
    max_retries=5,
)
def flaky_fetch(
    self: Task,
    fail_times: Annotated[
        int, Field(ge=0, le=10, description="Transient failures before it succeeds")
    ] = 2,
) -> dict[str, int]:
    """Retrying task: fails with a transient error on its first ``fail_times`` attempts."""
    attempt = self.request.retries
    if attempt < fail_times:
        raise TransientError(f"dependency unavailable (attempt {attempt + 1})")
    return {"attempts": attempt + 1}


@declare(
    "tasks.heartbeat",
    # A heartbeat older than one period is worthless: never run a backlog of them.
    schedule=Periodic(lambda settings: settings.heartbeat_interval_seconds, skip_missed=True),
    ignore_result=True,
)
def heartbeat() -> None:
    """Periodic task sent by beat: stamps when a worker ran it (beat stamps when it sent it)."""
    get_redis().set(HEARTBEAT_RAN_KEY, f"{time.time():.3f}")


@declare(
    "tasks.record_order",
    http=Http("Records an order idempotently (keyed by `order_id`): safe to run twice."),
    bind=True,
    track_started=True,
)
def record_order(
    self: Task,
    order_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")],
    work_seconds: Annotated[
        float, Field(ge=0, le=300, description="Simulated work, up to the soft time limit")
    ] = 0.0,
) -> dict[str, Any]:
    """Idempotent side effect: the effect is keyed by ``order_id``, so a redelivered copy (its
    worker died mid-task) overwrites the same entry instead of recording the order twice.
    Attempts are counted too, so redelivery is visible."""
    store = get_redis()
    attempts = store.hincrby(ORDER_ATTEMPTS_KEY, order_id, 1)
    time.sleep(work_seconds)
    effect = {"order_id": order_id, "task_id": self.request.id, "attempts": attempts}
    store.hset(ORDERS_KEY, order_id, json.dumps(effect))
    return effect
