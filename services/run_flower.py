"""Start Flower with this app (so the same broker): ``python services/run_flower.py [flower
flags]``. Flower's own steps, with /metrics behind the same auth as its pages
(``pkg/flower_app.py``).

Defaults: FLOWER_PORT, LISTEN_HOST, state persisted to FLOWER_DB; basic auth from
FLOWER_BASIC_AUTH (required in prod), passed through the environment so it never shows in
``ps``. User flags win.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NO_AUTH_IN_PROD = "Invalid settings:\n  FLOWER_BASIC_AUTH is required in prod (user:password)"


def default_argv(host: str, port: int, db: Path) -> list[str]:
    return [
        f"--address={host}",
        f"--port={port}",
        # Keep seen tasks and workers across restarts.
        "--persistent=True",
        f"--db={db}",
        "--state_save_interval=60000",
        # Drop workers that have been offline for an hour instead of listing them forever.
        "--purge_offline_workers=3600",
    ]


def main(user_args: list[str]) -> int:
    from internal.celery_tasks import default_celery_client
    from internal.config.setting import get_settings
    from internal.infra.metrics import register_app_metrics
    from pkg.flower_app import serve

    settings = get_settings()
    auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else ""
    if settings.app_env == "prod" and not auth:
        # Flower shows task arguments and results and can revoke tasks: never open in prod.
        print(NO_AUTH_IN_PROD, file=sys.stderr)
        return 1
    settings.flower_db.parent.mkdir(parents=True, exist_ok=True)
    if auth:
        os.environ["FLOWER_BASIC_AUTH"] = auth
    argv = default_argv(settings.listen_host, settings.flower_port, settings.flower_db)
    register_app_metrics(settings)  # served with Flower's own at /metrics
    if settings.log_format == "json":
        from pkg.json_logs import use_json_logs

        use_json_logs("flower")
        argv.append("--logging=none")  # tornado's own log setup would replace ours
    return serve(default_celery_client.app, [*argv, *user_args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
