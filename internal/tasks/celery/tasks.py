"""Example tasks, each a pattern to copy. All are idempotent: delivery is at-least-once
(late ack), so a task may run again after a worker dies mid-task."""

from __future__ import annotations

import json
import time
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from internal.infra.redis import HEARTBEAT_RAN_KEY, ORDER_ATTEMPTS_KEY, ORDERS_KEY, get_redis
from internal.tasks.celery import queues

logger = get_task_logger(__name__)


class TransientError(Exception):
    """A failure worth retrying (a timeout, a 503 from a dependency)."""


@shared_task(name=queues.ADD)
def add(x: int, y: int) -> int:
    """Quick task: pure, so running it twice is harmless."""
    return x + y


# Tasks that run for a while report STARTED (track_started): one extra result write, worth it
# only when a caller may look while the task runs. Quick tasks go straight to SUCCESS.
@shared_task(
    name=queues.LONG_REPORT, bind=True, track_started=True, soft_time_limit=600, time_limit=660
)
def long_report(self: Task, steps: int = 10, step_seconds: float = 0.5) -> dict[str, Any]:
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


@shared_task(
    name=queues.FLAKY_FETCH,
    bind=True,
    autoretry_for=(TransientError,),
    retry_backoff=1,  # 1 s, 2 s, 4 s, ... between attempts
    retry_backoff_max=30,  # never wait more than 30 s between attempts
    retry_jitter=True,  # spread retries so failed tasks do not stampede a dependency
    max_retries=5,
)
def flaky_fetch(self: Task, fail_times: int = 2) -> dict[str, int]:
    """Retrying task: fails with a transient error on its first ``fail_times`` attempts."""
    attempt = self.request.retries
    if attempt < fail_times:
        raise TransientError(f"dependency unavailable (attempt {attempt + 1})")
    return {"attempts": attempt + 1}


@shared_task(name=queues.HEARTBEAT, ignore_result=True)
def heartbeat() -> None:
    """Periodic task sent by beat: stamps when a worker ran it (beat stamps when it sent it)."""
    get_redis().set(HEARTBEAT_RAN_KEY, f"{time.time():.3f}")


@shared_task(name=queues.RECORD_ORDER, bind=True, track_started=True)
def record_order(self: Task, order_id: str, work_seconds: float = 0.0) -> dict[str, Any]:
    """Idempotent side effect: the effect is keyed by ``order_id``, so a redelivered copy (its
    worker died mid-task) overwrites the same entry instead of recording the order twice.
    Attempts are counted too, so redelivery is visible."""
    store = get_redis()
    attempts = store.hincrby(ORDER_ATTEMPTS_KEY, order_id, 1)
    time.sleep(work_seconds)
    effect = {"order_id": order_id, "task_id": self.request.id, "attempts": attempts}
    store.hset(ORDERS_KEY, order_id, json.dumps(effect))
    return effect
