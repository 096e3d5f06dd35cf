"""A warm shutdown with a deadline: running tasks get ``seconds`` to finish, then go back.

A Celery worker stops warm on SIGTERM: it takes no new task and waits for the running ones,
however long they take, until the orchestrator's grace period runs out and SIGKILL hands their
messages back only when their leases run out. Celery's own soft shutdown
(``worker_soft_shutdown_timeout`` with ``REMAP_SIGTERM=SIGQUIT``) always sleeps its whole
timeout once any task runs, even when the tasks end a second later, and blocks the event loop
meanwhile. So instead: the warm shutdown runs as usual, and if the worker is still there after
``seconds``, it is sent SIGQUIT, Celery's cold shutdown, which cancels the tasks still running
and hands their messages straight back to the queue (late ack, reject on worker lost).
Set ``seconds`` a few seconds below the orchestrator's grace period (compose
``stop_grace_period``, Kubernetes ``terminationGracePeriodSeconds``).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from celery import signals


def hand_back_after(seconds: float) -> None:
    """Install the deadline in this worker process (call before the worker starts)."""

    started = threading.Event()

    def on_shutting_down(how: str = "", **_: Any) -> None:
        # A cold shutdown cancels and hands back by itself; a second SIGTERM changes nothing.
        if how != "Warm" or started.is_set():
            return
        started.set()
        timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGQUIT))
        timer.daemon = True  # a worker that stops in time exits without waiting for it
        timer.start()

    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
