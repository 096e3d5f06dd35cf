"""Tasks that only the tests need, never shipped in the production task set. A test's worker
imports them with Celery's own flag: ``run_celery_worker.py -I tests.support.tasks_for_tests``."""

from __future__ import annotations

import os
import signal
import time

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from internal.infra.redis import get_redis

POISON_PILL = "tests.poison_pill"
MODULE = __name__


@shared_task(name=POISON_PILL, max_retries=2)  # type: ignore[untyped-decorator]
def poison_pill() -> None:
    """Kills the process running it, as a segfault or an OOM kill would. Shows the cap on
    redelivery: retried on worker loss up to max_retries, then FAILURE (WorkerLostError)."""
    os.kill(os.getpid(), signal.SIGKILL)


NEEDS_DEPENDENCY = "tests.needs_dependency"
DEPENDENCY_DOWN_KEY = "tests:dependency-down"


@shared_task(  # type: ignore[untyped-decorator]
    name=NEEDS_DEPENDENCY,
    autoretry_for=(ConnectionError,),
    max_retries=2,
    default_retry_delay=0,
)
def needs_dependency() -> str:
    """Fails with a retried error while the test says its dependency is down: its retries run
    out, and it succeeds once replayed after the dependency is back."""
    if get_redis().exists(DEPENDENCY_DOWN_KEY):
        raise ConnectionError("dependency down")
    return "done"


OVERRUNS = "tests.overruns_its_time_limit"


# Both limits: billiard measures the hard limit only once the soft one has passed, so a task
# that set only time_limit=1 would run on until the app's soft limit (300 s).
@shared_task(name=OVERRUNS, soft_time_limit=0.5, time_limit=1)  # type: ignore[untyped-decorator]
def overruns_its_time_limit() -> None:
    """Ignores its soft time limit, so it is killed at its hard one (1 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            time.sleep(deadline - time.monotonic())
        except SoftTimeLimitExceeded:
            continue


SLEEPS = "tests.sleeps"


@shared_task(name=SLEEPS)  # type: ignore[untyped-decorator]
def sleeps(seconds: float) -> float:
    """Works without Redis (nothing but the wait), so it can finish while Redis is away."""
    time.sleep(seconds)
    return seconds
