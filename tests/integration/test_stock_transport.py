"""BROKER_TRANSPORT=kombu selects kombu's own Redis transport, and the app still works on it:
API to worker and back, a countdown, a killed pool process's task redelivered."""

from __future__ import annotations

import signal

import httpx
import psutil
import pytest
import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.infra.redis import ORDER_ATTEMPTS_KEY
from internal.tasks.celery import tasks as app_tasks
from pkg.redis_transport import UnsupportedKombuVersion, check_kombu_version
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import Redis, free_port, wait_until


def test_the_app_works_on_kombus_own_transport(launch: LaunchFn, redis_server: Redis) -> None:
    url = redis_server.url(8)
    store = redis.Redis.from_url(url, decode_responses=True)
    store.flushdb()
    env = {"REDIS_URL": url, "BROKER_TRANSPORT": "kombu"}
    worker = start_worker(
        launch, node_name("stock"), "-l", "info", "-Q", "default", "--concurrency=2", env=env
    )
    assert "Connected to redis://" in worker.output  # kombu's own, not pkg.redis_transport
    port = free_port()
    launch("run_api.py", "--port", str(port), env=env)
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{api}/readyz").status_code == 200, timeout=30, what="the API")

    r = httpx.post(f"{api}/api/v1/tasks/add", json={"x": 20, "y": 22}, timeout=10)
    assert r.status_code == 202, r.text
    status_url = r.json()["status_url"]
    wait_until(lambda: httpx.get(status_url).json()["result"] == 42, timeout=30, what="add")

    client = build_celery_client(Settings(redis_url=url, broker_transport="kombu"))
    assert client.app.conf.broker_transport is None
    later = client.submit(task_name=app_tasks.add.name, kwargs={"x": 1, "y": 1}, countdown=2)
    slow = client.submit(
        task_name=app_tasks.record_order.name, kwargs={"order_id": "s", "work_seconds": 3}
    )
    wait_until(lambda: store.hget(ORDER_ATTEMPTS_KEY, "s"), timeout=30, what="the slow task")
    for child in psutil.Process(worker.proc.pid).children():
        child.send_signal(signal.SIGKILL)  # reject on worker lost: redelivered at once
    assert later.get(timeout=30) == 2
    assert slow.get(timeout=60)["attempts"] == 2
    assert not store.keys("unacked_owner.*")  # no leases on this transport


def test_a_kombu_outside_the_tested_series_is_refused() -> None:
    check_kombu_version("5.7.3")
    with pytest.raises(UnsupportedKombuVersion, match=r"tested with kombu 5\.7\.x.*kombu 5\.8\.0"):
        check_kombu_version("5.8.0")


def test_kombus_transport_refuses_what_would_outlive_its_visibility_timeout(
    launch: LaunchFn, redis_server: Redis
) -> None:
    """Regression (issue 10, promises): with kombu's transport an ETA, countdown or time limit
    past the visibility timeout was accepted, and the task then ran twice. Now refused, naming
    the setting; with leases (the default) nothing to refuse."""
    import datetime as dt

    import internal.tasks.celery.tasks  # noqa: F401  (registers the tasks with every app)

    url = redis_server.url(9)
    stock = build_celery_client(
        Settings(redis_url=url, broker_transport="kombu", visibility_timeout=400)
    )
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        stock.submit(task_name=app_tasks.add.name, kwargs={"x": 1, "y": 1}, countdown=400)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="countdown/ETA of 3600 s reaches VISIBILITY_TIMEOUT"):
        stock.submit(task_name=app_tasks.add.name, kwargs={"x": 1, "y": 1}, eta=later)
    stock.submit(
        task_name=app_tasks.add.name, kwargs={"x": 1, "y": 1}, countdown=300
    )  # within: fine
    # A task's own apply_async (retries too) goes through the same check.
    with pytest.raises(ValueError, match="VISIBILITY"):
        stock.app.tasks[app_tasks.add.name].apply_async(kwargs={"x": 1, "y": 1}, countdown=401)

    leased = build_celery_client(Settings(redis_url=url))
    leased.submit(task_name=app_tasks.add.name, kwargs={"x": 1, "y": 1}, countdown=4000)

    # long_report's own time limit (660 s) reaches a visibility timeout of 400 s.
    env = {"REDIS_URL": url, "BROKER_TRANSPORT": "kombu", "VISIBILITY_TIMEOUT": "400"}
    worker = launch("run_celery_worker.py", "-n", node_name("refuses"), env=env)
    assert worker.proc.wait(timeout=60) == 1
    assert "tasks.long_report: time limit of 660 s reaches VISIBILITY_TIMEOUT (400 s)" in (
        worker.output
    )
