"""Start Celery beat: ``python services/run_celery_beat.py [celery beat flags]``.

Defaults: log level info, schedule file in BEAT_SCHEDULE_DIR (created if missing, so a non-root
user can keep it on a writable volume); user flags win. ``--reload`` restarts it on code changes.

Only one beat runs at a time, whatever is scaled: beat first takes a Redis lock (renewed while it
runs). A second beat stands by and takes over within BEAT_LOCK_TTL_SECONDS if the first dies.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.launcher import celery_log_flags, launch

BEAT_LOCK = "app:beat:lock"


def default_argv(schedule_dir: Path) -> list[str]:
    return ["beat", "-l", "info", "--schedule", str(schedule_dir / "celerybeat-schedule")]


def stop_this_process() -> None:
    # Beat's own SIGTERM handling: a clean stop, schedule file synced.
    os.kill(os.getpid(), signal.SIGTERM)


def stamp_sent_heartbeat(sender: str | None = None, **_: object) -> None:
    """Beat's liveness for its healthcheck: the time it last sent the heartbeat task. Stamped
    here, not by the worker that runs the task, so busy or absent workers (the task expires
    after one interval) never make beat look dead."""
    from internal.celery_tasks import default_celery_client
    from internal.infra.redis import HEARTBEAT_KEY, get_redis

    if sender == default_celery_client.app.conf.beat_schedule["heartbeat"]["task"]:
        get_redis().set(HEARTBEAT_KEY, f"{time.time():.3f}")


def start_single_beat(argv: list[str]) -> int | None:
    from celery import signals

    from internal.celery_tasks import default_celery_client
    from internal.config.setting import get_settings
    from internal.infra.redis import get_redis
    from pkg.singleton_lock import SingletonLock

    signals.after_task_publish.connect(stamp_sent_heartbeat, weak=False)

    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s: %(levelname)s/beat-lock] %(message)s"
    )
    ttl = get_settings().beat_lock_ttl_seconds
    with SingletonLock(get_redis(), BEAT_LOCK, ttl=ttl, on_lost=stop_this_process):
        code: int | None = default_celery_client.app.start(argv)
        return code


def main(user_args: list[str]) -> int:
    from internal.config.setting import get_settings
    from pkg.tracing import start_tracing

    settings = get_settings()
    start_tracing("beat")
    settings.beat_schedule_dir.mkdir(parents=True, exist_ok=True)
    return launch(
        __file__,
        start_single_beat,
        [*celery_log_flags(settings.log_format, "beat"), *default_argv(settings.beat_schedule_dir)],
        user_args,
        reload_default=settings.reload,
        grace_seconds=settings.shutdown_grace_seconds,
        # Two beats at once would fire every entry twice: stop the old one first.
        overlap_on_reload=False,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
