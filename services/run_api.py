"""Start the API with uvicorn: ``python services/run_api.py [uvicorn flags]``.

Defaults: LISTEN_HOST, API_PORT, and uvicorn's own ``--reload`` limited to Python files under
internal/, pkg/ and services/ when RELOAD=true (or ``--reload``). User flags win.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uvicorn.main import main as uvicorn_cli

from services.launcher import REPO_ROOT, WATCHED_DIRS, run_click, split_reload_flag

APP = "internal.api.app:app"
# LOG_FORMAT=json: uvicorn's and the app's lines as JSON (pkg/json_logs.py), via uvicorn's own
# --log-config (a logging dictConfig).
JSON_LOG_CONFIG = Path(__file__).with_name("uvicorn_json_logging.json")
GRACEFUL_SHUTDOWN_SECONDS = 10


def default_argv(host: str, port: int, reload: bool) -> list[str]:
    argv = [
        APP,
        "--app-dir", str(REPO_ROOT),
        "--host", host,
        "--port", str(port),
        "--no-server-header",
        # Finish in-flight requests on SIGTERM, within compose's stop_grace_period (15 s).
        "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_SECONDS),
    ]  # fmt: skip
    if reload:
        argv.append("--reload")
        for path in WATCHED_DIRS:
            argv += ["--reload-dir", str(path)]
    return argv


def main(user_args: list[str]) -> int:
    from internal.config.setting import get_settings

    settings = get_settings()
    reload_choice, args = split_reload_flag(user_args)
    reload = settings.reload if reload_choice is None else reload_choice
    argv = default_argv(settings.listen_host, settings.api_port, reload)
    if settings.log_format == "json":
        argv += ["--log-config", str(JSON_LOG_CONFIG)]
    return run_click(
        lambda a: uvicorn_cli.main(args=a, prog_name="uvicorn", standalone_mode=False),
        [*argv, *args],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
