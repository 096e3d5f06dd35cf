"""Dev auto-reload: a code edit reaches the worker with no restart by hand, and no task is lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.tasks.celery import tasks as app_tasks
from pkg.celery_task import CeleryClient
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import Redis, wait_until


@pytest.fixture
def isolated(redis_server: Redis) -> tuple[str, CeleryClient]:
    # Its own Redis DB, so the session's shared worker does not take these tasks.
    url = redis_server.url(3)
    return url, build_celery_client(Settings(redis_url=url))


def add_result(client: CeleryClient) -> int:
    return int(client.submit(task_name=app_tasks.add.name, kwargs={"x": 1, "y": 2}).get(timeout=10))


def test_edit_reloads_the_worker_without_losing_the_running_task(
    launch: LaunchFn, tree: Path, isolated: tuple[str, CeleryClient]
) -> None:
    url, client = isolated
    name = node_name("reload")
    proc = start_worker(
        launch, name, "--reload", "-l", "info", "-Q", "default,slow", "--concurrency=2",
        env={"REDIS_URL": url}, cwd=tree,
    )  # fmt: skip
    assert add_result(client) == 3

    # A non-Python file changing must not restart anything.
    (tree / "internal" / "notes.txt").write_text("not code")
    time.sleep(1.5)
    assert "reloading" not in proc.output

    running = client.submit(
        task_name=app_tasks.long_report.name, kwargs={"steps": 10, "step_seconds": 0.3}
    )
    wait_until(lambda: running.state == "PROGRESS", timeout=20, what="the long task to start")

    tasks_py = tree / "internal" / "tasks" / "celery" / "tasks.py"
    tasks_py.write_text(tasks_py.read_text().replace("return x + y\n", "return x + y + 1000\n"))
    edited = time.monotonic()
    wait_until(lambda: add_result(client) == 1003, timeout=30, what="the new code to run")
    print(f"reload: new code ran {time.monotonic() - edited:.2f} s after the edit")

    assert running.get(timeout=30)["complete"] is True  # finished by the draining old worker
    assert proc.proc.poll() is None, "the launcher itself must not restart"
    assert "change in tasks.py: reloading" in proc.output


def test_sigterm_reaches_the_worker_under_reload_and_running_tasks_finish(
    launch: LaunchFn, tree: Path, isolated: tuple[str, CeleryClient]
) -> None:
    url, client = isolated
    proc = start_worker(
        launch, node_name("reload-stop"), "--reload", "-l", "info", "-Q", "slow",
        "--concurrency=1", env={"REDIS_URL": url}, cwd=tree,
    )  # fmt: skip
    running = client.submit(
        task_name=app_tasks.long_report.name, kwargs={"steps": 6, "step_seconds": 0.3}
    )
    wait_until(lambda: running.state == "PROGRESS", timeout=20, what="the long task to start")
    stopped = time.monotonic()
    assert proc.stop(signal.SIGTERM) == 0
    print(f"warm shutdown under reload took {time.monotonic() - stopped:.2f} s")
    assert running.get(timeout=5)["complete"] is True
    assert "Warm shutdown" in proc.output
