"""Start a Celery worker: ``python services/run_celery_worker.py [celery worker flags]``.

Defaults: queue ``default`` (WORKER_QUEUES, ``*`` for every queue a task is declared on), log
level debug, prefork pool, concurrency 4 (WORKER_CONCURRENCY); any flag given here is appended
and wins (``-l info``, ``--concurrency=8``, ``-Q default,slow``).
``--reload`` (or RELOAD=true) restarts the worker when Python code changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a script: make the repo root importable
    # os.path, not pathlib: on Windows this must get as far as the refusal in main().
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WINDOWS_MESSAGE = (
    "Error: This worker script does not support Windows. Please use a POSIX system (Linux/macOS)."
)
# What a cold shutdown (cancel the running tasks, hand them back, exit) may take.
COLD_SHUTDOWN_SECONDS = 4.0


def default_argv(queue: str, concurrency: int) -> list[str]:
    return [
        "worker",
        "-Q", queue,
        "-l", "debug",
        "--pool", "prefork",
        "--concurrency", str(concurrency),
    ]  # fmt: skip


def queues_to_consume(setting: str | None, default_queue: str, declared: Sequence[str]) -> str:
    """The -Q value: WORKER_QUEUES, where "*" is every queue a task is declared on."""
    if setting == "*":
        return ",".join(declared)
    return setting or default_queue


def main(user_args: list[str]) -> int:
    if os.name == "nt":  # before anything that builds a path (pathlib refuses, on Windows)
        print(WINDOWS_MESSAGE, file=sys.stderr)
        return 1
    from internal.celery_tasks import default_celery_client, default_queue, task_catalog
    from internal.config.setting import get_settings
    from pkg.shutdown_deadline import hand_back_after
    from pkg.tracing import start_tracing
    from services.launcher import celery_log_flags, launch

    settings = get_settings()
    start_tracing("worker")
    queues = queues_to_consume(settings.worker_queues, default_queue, task_catalog.queues())
    # Running tasks get SHUTDOWN_GRACE_SECONDS to finish on a stop; then they go back to the
    # queue at once (a redeploy does not wait for their leases).
    hand_back_after(settings.shutdown_grace_seconds)

    def start(argv: list[str]) -> int:
        try:
            default_celery_client.refuse_limits_beyond_visibility()
        except ValueError as exc:
            print(f"Invalid settings:\n  {exc}", file=sys.stderr)
            return 1
        return default_celery_client.app.worker_main(argv)

    return launch(
        __file__,
        start,
        [
            *celery_log_flags(settings.log_format, "worker"),
            *default_argv(queues, settings.worker_concurrency),
        ],
        user_args,
        reload_default=settings.reload,
        # The reloading supervisor kills a child only after its own hand-back had time to run.
        grace_seconds=settings.shutdown_grace_seconds + COLD_SHUTDOWN_SECONDS,
        # New code takes new tasks at once while the old worker finishes the running ones.
        overlap_on_reload=True,
        # Mingle makes a starting worker wait a second for its peers' revoked ids and clocks:
        # a second on every reload, for state that matters in production, not in dev.
        reload_child_flags=["--without-mingle"],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
