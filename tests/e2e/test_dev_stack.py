"""The dev stack as a user runs it: `docker compose up`, curl, Flower, edit code, scale."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.support.browser import ARTIFACTS, browser_page
from tests.support.processes import wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def api(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port('api', 8000)}"


def flower(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port('flower', 5555)}"


def run_add(stack: Stack, x: int, y: int) -> Any:
    url = api(stack)
    r = httpx.post(f"{url}/api/v1/tasks/add", json={"x": x, "y": y}, timeout=10)
    assert r.status_code == 202, r.text
    status_url = r.json()["status_url"]
    done = wait_until(
        lambda: (s := httpx.get(status_url, timeout=10).json())["ready"] and s,
        timeout=30,
        what="the task result",
    )
    assert done["state"] == "SUCCESS", done
    return done["result"]


def flower_workers(stack: Stack) -> dict[str, Any]:
    r = httpx.get(f"{flower(stack)}/api/workers", params={"refresh": "1"}, timeout=20)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_ready_and_a_task_completes(dev_stack: Stack) -> None:
    assert dev_stack.running_services() == {"redis", "api", "worker", "beat", "flower"}
    assert httpx.get(f"{api(dev_stack)}/readyz", timeout=10).status_code == 200
    assert run_add(dev_stack, 20, 22) == 42


def test_flower_lists_the_worker_and_the_task(dev_stack: Stack) -> None:
    r = httpx.post(f"{api(dev_stack)}/api/v1/tasks/add", json={"x": 1, "y": 1}, timeout=10)
    task_id = r.json()["task_id"]
    workers = wait_until(lambda: flower_workers(dev_stack), timeout=30, what="workers in flower")
    (container,) = dev_stack.container_ids("worker")
    assert f"celery@{container[:12]}" in workers

    def task_in_flower() -> bool:
        tasks = httpx.get(f"{flower(dev_stack)}/api/tasks", timeout=10).json()
        return bool(tasks.get(task_id, {}).get("state") == "SUCCESS")

    wait_until(task_in_flower, timeout=30, what="the task in flower")


def test_flower_dashboard_in_a_browser(dev_stack: Stack) -> None:
    run_add(dev_stack, 2, 3)
    with browser_page() as page:
        page.goto(f"{flower(dev_stack)}/workers", wait_until="networkidle")
        (container,) = dev_stack.container_ids("worker")
        row = page.locator("tr", has_text=f"celery@{container[:12]}")
        row.wait_for(timeout=30_000)
        assert "Online" in row.inner_text()
        page.screenshot(path=str(ARTIFACTS / "flower-workers.png"))
        page.goto(f"{flower(dev_stack)}/tasks", wait_until="networkidle")
        page.locator("td", has_text="SUCCESS").first.wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "flower-tasks.png"))


def test_code_edit_reaches_the_worker(dev_stack: Stack) -> None:
    tasks_py = dev_stack.workdir / "internal" / "tasks" / "celery" / "tasks.py"
    original = tasks_py.read_text()
    worker_before = dev_stack.container_ids("worker")
    tasks_py.write_text(original.replace("return x + y\n", "return x + y + 1000\n"))
    edited = time.monotonic()
    try:
        wait_until(lambda: run_add(dev_stack, 1, 2) == 1003, timeout=60, what="the new code")
        print(f"\ndev reload: new code ran {time.monotonic() - edited:.1f} s after the edit")
    finally:
        tasks_py.write_text(original)
    assert dev_stack.container_ids("worker") == worker_before  # no container restart
    wait_until(lambda: run_add(dev_stack, 1, 2) == 3, timeout=60, what="the restored code")


def test_compose_run_worker_passes_flags_to_the_launcher(dev_stack: Stack) -> None:
    name = f"run-{uuid.uuid4().hex[:6]}"
    dev_stack.compose("run", "-d", "--rm", "--name", name, "worker", "-l", "info")
    try:

        def logs() -> str:
            result = subprocess.run(
                ["docker", "logs", name], capture_output=True, text=True, timeout=30
            )
            return result.stdout + result.stderr  # Celery logs to stderr

        wait_until(lambda: " ready." in logs(), timeout=90, what="the run worker to be ready")
        out = logs()
        assert "INFO/MainProcess" in out
        assert "DEBUG/" not in out  # the user's -l info beat the launcher's -l debug
    finally:
        subprocess.run(["docker", "stop", "-t", "20", name], capture_output=True, timeout=60)


def test_scale_workers(dev_stack: Stack) -> None:
    dev_stack.compose("up", "-d", "--wait", "--no-recreate", "--scale", "worker=2", timeout=300)
    containers = dev_stack.container_ids("worker")
    assert len(containers) == 2
    expected = {f"celery@{c[:12]}" for c in containers}
    wait_until(lambda: expected <= set(flower_workers(dev_stack)), timeout=60, what="two workers")
