"""Shared fixtures: one throwaway Redis for the session, launchers started as real processes."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from pkg.celery_task import CeleryClient
from tests.support.processes import REPO_ROOT, Launched, Redis, free_port, stop_all, wait_until

# The compose fixtures (images, dev_stack, prod_stack) for tests/e2e and tests/faults.
pytest_plugins = ["tests.support.stack_fixtures"]

LaunchFn = Callable[..., Launched]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_env(redis_server: Redis, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    state = tmp_path_factory.mktemp("state")
    return {
        "APP_ENV": "local",
        "REDIS_URL": redis_server.url(0),
        "RELOAD": "false",
        "LISTEN_HOST": "127.0.0.1",
        "BEAT_SCHEDULE_DIR": str(state / "beat"),
        "FLOWER_DB": str(state / "flower" / "flower.db"),
        "PYTHONUNBUFFERED": "1",
    }


def _launcher_factory(logs: Path, base_env: dict[str, str], started: list[Launched]) -> LaunchFn:
    def launch(
        script: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
    ) -> Launched:
        log = logs / f"{len(started):02d}-{script.removesuffix('.py')}.log"
        proc = Launched(script, args, {**base_env, **(env or {})}, log, cwd=cwd)
        started.append(proc)
        return proc

    return launch


@pytest.fixture
def launch(tmp_path: Path, base_env: dict[str, str]) -> Iterator[LaunchFn]:
    """Start a launcher for one test; it is stopped (SIGTERM, then SIGKILL) afterwards."""
    started: list[Launched] = []
    yield _launcher_factory(tmp_path, base_env, started)
    stop_all(started)


@pytest.fixture(scope="session")
def session_launch(
    tmp_path_factory: pytest.TempPathFactory, base_env: dict[str, str]
) -> Iterator[LaunchFn]:
    started: list[Launched] = []
    yield _launcher_factory(tmp_path_factory.mktemp("logs"), base_env, started)
    stop_all(started)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the code, so the test can edit it."""
    for name in ("internal", "pkg", "services"):
        shutil.copytree(
            REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


@pytest.fixture(scope="session")
def client(redis_server: Redis) -> CeleryClient:
    """The test process's own client for the app, on the test Redis (submits by name)."""
    return build_celery_client(Settings(redis_url=redis_server.url(0)))


def node_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"


def start_worker(launch: LaunchFn, name: str, *args: str, **kw: object) -> Launched:
    (proc,) = start_workers(launch, [(name, args, kw)])
    return proc


def start_workers(
    launch: LaunchFn, workers: list[tuple[str, tuple[str, ...], dict[str, object]]]
) -> list[Launched]:
    """Start several workers (name, flags, launch options) side by side, then wait until each
    is ready: one start-up's time instead of one each."""
    procs = [
        launch("run_celery_worker.py", "-n", name, "--without-mingle", *args, **kw)
        for name, args, kw in workers
    ]
    for (name, _, _), proc in zip(workers, procs, strict=True):
        proc.wait_for_output(f"{name} ready.", timeout=60)
    return procs


@pytest.fixture(scope="session")
def worker(session_launch: LaunchFn) -> str:
    """A worker on both queues, shared by the API tests. Returns its node name."""
    name = node_name("shared")
    start_worker(session_launch, name, "-l", "info", "-Q", "default,slow", "--concurrency", "2")
    return name


@pytest.fixture(scope="session")
def api_url(session_launch: LaunchFn, worker: str) -> str:
    """The API served by its launcher (uvicorn) on a free port, with a worker behind it."""
    port = free_port()
    session_launch("run_api.py", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30, what="the API")
    return url
