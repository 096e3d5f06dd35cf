"""Tasks that only the tests need, never shipped in the production task set. A test's worker
imports them with Celery's own flag: ``run_celery_worker.py -I tests.support.tasks_for_tests``."""

from __future__ import annotations

import os
import signal

from celery import shared_task

POISON_PILL = "tests.poison_pill"
MODULE = __name__


@shared_task(name=POISON_PILL, max_retries=2)  # type: ignore[untyped-decorator]
def poison_pill() -> None:
    """Kills the process running it, as a segfault or an OOM kill would. Shows the cap on
    redelivery: retried on worker loss up to max_retries, then FAILURE (WorkerLostError)."""
    os.kill(os.getpid(), signal.SIGKILL)
