"""The compose stack as a developer feels it, and the prod image (needs Docker).

4. Dev loop, in the dev stack from a copy of the repo:
   - reload: seconds from saving ``tasks.py`` to the worker running the new code (an ``add``
     through the API returns the new answer); baseline: ``docker compose restart worker``, the
     manual way, to the worker serving again;
   - ``docker compose up`` (images built) to every service healthy; baseline: Redis alone.
5. Prod image: its size (baseline: the Python base image it is built on) and the rebuild after a
   one-line code change with cached dependencies (baseline: a rebuild with nothing changed).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.common import Figure, Row
from tests.support.processes import free_port
from tests.support.stack import Stack, copy_repo

TASKS_FILE = Path("internal/tasks/celery/tasks.py")
ORIGINAL_LINE = "return x + y\n"


def add_answer(api: str) -> int | None:
    """1 + 2 through the API, or None while nothing answers."""
    try:
        r = httpx.post(f"{api}/api/v1/tasks/add", json={"x": 1, "y": 2}, timeout=5)
        state = httpx.get(r.json()["status_url"], params={"wait": 5}, timeout=10).json()
        return int(state["result"]) if state.get("ready") else None
    except (httpx.HTTPError, KeyError, ValueError, TypeError):
        return None


def seconds_until(check: Callable[[], int | None], expected: int, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check() == expected:
            return time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"no answer {expected} within {timeout} s")


def timed_up(stack: Stack, *services: str) -> float:
    started = time.monotonic()
    stack.compose("up", "-d", "--wait", "--wait-timeout", "180", *services, timeout=300)
    return time.monotonic() - started


def dev_loop(workdir: Path, n_rounds: int) -> list[Row]:
    tree = copy_repo(workdir / "dev-repo")
    ports: dict[str, str | None] = {"API_PORT": str(free_port()), "FLOWER_PORT": str(free_port())}
    stack = Stack(tree, profile="dev", env=ports)
    stack.compose("build", timeout=1800)
    up: list[float] = []
    redis_only: list[float] = []
    reload: list[float] = []
    restart: list[float] = []
    try:
        for _ in range(n_rounds):
            redis_only.append(timed_up(stack, "redis"))
            stack.down()
            up.append(timed_up(stack))
            stack.down()
        timed_up(stack)
        api = f"http://127.0.0.1:{ports['API_PORT']}"
        seconds_until(lambda: add_answer(api), 3)
        tasks = tree / TASKS_FILE
        original = tasks.read_text()
        for i in range(1, n_rounds + 1):
            tasks.write_text(original.replace(ORIGINAL_LINE, f"return x + y + {1000 * i}\n"))
            reload.append(seconds_until(lambda: add_answer(api), 3 + 1000 * i))
            time.sleep(3)  # let the old worker finish draining
            started = time.monotonic()
            stack.compose("restart", "-t", "30", "worker")  # the manual way, as a baseline
            seconds_until(lambda: add_answer(api), 3 + 1000 * i)
            restart.append(time.monotonic() - started)
        tasks.write_text(original)
    finally:
        stack.down()
    r, rs = Figure(tuple(reload)), Figure(tuple(restart))
    u, ru = Figure(tuple(up)), Figure(tuple(redis_only))
    s = "{:.1f}"
    return [
        Row("4. dev loop", "reload: save tasks.py → new code runs, s", r.show(s), rs.show(s),
            "`compose restart worker` → serving", r.median / rs.median, "≤ 2 s"),
        Row("4. dev loop", "`docker compose up` (built) → all healthy, s", u.show(s), ru.show(s),
            "Redis alone", u.median / ru.median, "≤ 20 s"),
    ]  # fmt: skip


def image_size_mb(image: str) -> float:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return int(out) / 1e6


def prod_image(workdir: Path, n_rounds: int, base_image: str) -> list[Row]:
    tree = copy_repo(workdir / "prod-repo")
    stack = Stack(tree, profile="prod")
    stack.compose("build", "api-prod", timeout=1800)
    image = json.loads(stack.compose("config", "--format", "json").stdout)["services"]["api-prod"]
    size, base = image_size_mb(image["image"]), image_size_mb(base_image)
    code_change: list[float] = []
    no_change: list[float] = []
    app_py = tree / "internal" / "api" / "app.py"
    original = app_py.read_text()
    for i in range(n_rounds):
        started = time.monotonic()
        stack.compose("build", "api-prod")
        no_change.append(time.monotonic() - started)
        app_py.write_text(f"{original}# rebuild {i}\n")
        started = time.monotonic()
        stack.compose("build", "api-prod")
        code_change.append(time.monotonic() - started)
    app_py.write_text(original)
    c, n = Figure(tuple(code_change)), Figure(tuple(no_change))
    return [
        Row("5. image", "prod image size, MB", f"{size:.0f}", f"{base:.0f}",
            "the Python base image", size / base, "≤ 200 MB"),
        Row("5. image", "prod rebuild after a one-line code change, s", c.show("{:.1f}"),
            n.show("{:.1f}"), "rebuild with nothing changed", c.median / n.median, "≤ 10 s"),
    ]  # fmt: skip
