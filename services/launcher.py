"""What every launcher in ``services/`` shares: flag order, errors, and dev auto-reload.

A launcher builds ``defaults + user flags`` (click keeps the last value of an option, so the
user's flags win) and runs the process in place. With reload on (``--reload`` or
``RELOAD=true``), it instead supervises a child copy of itself and restarts it when a Python
file under ``internal/``, ``pkg/`` or ``services/`` changes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

import click
import watchfiles

REPO_ROOT = Path(__file__).resolve().parents[1]
WATCHED_DIRS = tuple(REPO_ROOT / name for name in ("internal", "pkg", "services"))
# Exit codes after which a supervised child is not restarted until the next change: 0 is a
# clean stop the user asked for (or --help), 2 is a usage error that no code edit will fix.
FINAL_EXIT_CODES = frozenset({0, 2})

log = logging.getLogger("launcher")


def split_reload_flag(args: Sequence[str]) -> tuple[bool | None, list[str]]:
    """Take the launcher's own ``--reload`` / ``--no-reload`` out of the user's flags."""
    choice: bool | None = None
    rest = []
    for arg in args:
        if arg in ("--reload", "--no-reload"):
            choice = arg == "--reload"
        else:
            rest.append(arg)
    return choice, rest


def celery_log_flags(log_format: str, service: str) -> list[str]:
    """Set up this process's logs for LOG_FORMAT and return the Celery flags that go with it.

    ``json``: every line one JSON object (``pkg/json_logs.py``), from now on and in place of
    Celery's own logging setup (its ``setup_logging`` signal, which pool processes send too);
    and Celery's global ``--quiet`` (before the subcommand), since its banner is printed, not
    logged. ``console``: Celery's own readable lines."""
    if log_format != "json":
        return []
    from celery import signals

    from pkg.json_logs import use_json_logs

    use_json_logs(service)

    def setup(loglevel: int | str | None = None, **_: object) -> None:
        use_json_logs(service, loglevel or logging.INFO)

    signals.setup_logging.connect(setup, weak=False)
    return ["--quiet"]


def run_click(start: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run a click-based program (Celery, uvicorn) with ``standalone_mode=False`` semantics:
    show a usage error the way click would (it names the bad flag) and return an exit code."""
    try:
        return int(start(argv) or 0)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except click.Abort:
        return 1


def launch(
    script: str,
    start: Callable[[list[str]], int | None],
    defaults: Sequence[str],
    user_args: Sequence[str],
    *,
    reload_default: bool,
    grace_seconds: float,
    overlap_on_reload: bool,
    reload_child_flags: Sequence[str] = (),
) -> int:
    """Run ``start(defaults + user_args)`` here, or under a reloading supervisor whose children
    also get ``reload_child_flags`` (before the user's flags, which still win)."""
    reload_choice, args = split_reload_flag(user_args)
    reload = reload_default if reload_choice is None else reload_choice
    if not reload:
        return run_click(start, [*defaults, *args])
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s: %(levelname)s/launcher] %(message)s"
    )
    child_cmd = [sys.executable, script, "--no-reload", *reload_child_flags, *args]
    return Supervisor(child_cmd, grace_seconds=grace_seconds, overlap=overlap_on_reload).run()


class Supervisor:
    """Runs a child process and replaces it when watched Python files change.

    - A reload sends the old child SIGTERM (Celery's warm shutdown: running tasks finish; after
      ``grace_seconds`` it is killed and its late-acked tasks are redelivered). With ``overlap``
      the new child starts first, so new code serves new tasks while the old one drains.
    - SIGTERM / SIGINT to the supervisor go to the child once and the supervisor waits for it up
      to ``grace_seconds``. The child has its own session, so a terminal's Ctrl-C reaches it
      once through us, not twice (a second SIGINT would be Celery's cold shutdown).
    - The supervisor stops children itself rather than relying on watchfiles' ``run_process``,
      whose stop sends SIGINT and kills after a fixed few seconds (watchfiles #258).
    """

    def __init__(
        self,
        cmd: list[str],
        *,
        grace_seconds: float,
        overlap: bool,
        watch: Sequence[Path] = WATCHED_DIRS,
    ) -> None:
        self.cmd = cmd
        self.watch = watch
        self.grace_seconds = grace_seconds
        self.overlap = overlap
        self.stop_event = threading.Event()
        self.stop_signal = signal.SIGTERM

    def run(self) -> int:
        # Python takes signal handlers in the main thread only (elsewhere: stop_event.set()).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        child: subprocess.Popen[bytes] | None = self._start()
        for changes in watchfiles.watch(
            *self.watch,
            watch_filter=watchfiles.PythonFilter(),
            stop_event=self.stop_event,
            rust_timeout=500,
            yield_on_timeout=True,
        ):
            if changes:
                names = sorted({Path(path).name for _, path in changes})
                log.info("change in %s: reloading", ", ".join(names))
                if child is not None and self.overlap:
                    old, child = child, self._start()
                    threading.Thread(target=self._stop, args=(old,), daemon=True).start()
                else:
                    if child is not None:
                        self._stop(child)
                    child = self._start()
            elif child is not None and child.poll() is not None:
                code = child.returncode
                if code in FINAL_EXIT_CODES:
                    return code
                log.error("child exited with code %s; waiting for a code change", code)
                child = None
        if child is None:
            return 1
        return self._stop(child, self.stop_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_signal = signal.Signals(signum)
        self.stop_event.set()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.cmd, start_new_session=True)

    def _stop(self, child: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> int:
        if child.poll() is None:
            child.send_signal(sig)
        try:
            return child.wait(timeout=self.grace_seconds)
        except subprocess.TimeoutExpired:
            log.warning(
                "child %s still running after %.0f s: killing it", child.pid, self.grace_seconds
            )
            os.killpg(child.pid, signal.SIGKILL)
            return child.wait()
