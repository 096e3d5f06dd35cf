"""Start Celery beat: ``python services/run_celery_beat.py [celery beat flags]``.

Defaults: log level info, schedule file in BEAT_SCHEDULE_DIR (created if missing, so a non-root
user can keep it on a writable volume); user flags win. ``--reload`` restarts it on code changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.launcher import launch


def default_argv(schedule_dir: Path) -> list[str]:
    return ["beat", "-l", "info", "--schedule", str(schedule_dir / "celerybeat-schedule")]


def main(user_args: list[str]) -> int:
    from internal.celery_tasks import default_celery_client
    from internal.config.setting import get_settings

    settings = get_settings()
    settings.beat_schedule_dir.mkdir(parents=True, exist_ok=True)
    return launch(
        __file__,
        default_celery_client.app.start,
        default_argv(settings.beat_schedule_dir),
        user_args,
        reload_default=settings.reload,
        grace_seconds=settings.shutdown_grace_seconds,
        # Two beats at once would fire every entry twice: stop the old one first.
        overlap_on_reload=False,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
