"""Each launcher started as a real process: its defaults, user flags winning, and its errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from pkg.celery_task import CeleryClient
from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import REPO_ROOT, Redis, free_port, healthcheck, wait_until


def inspect(client: CeleryClient, name: str) -> tuple[list[str], dict[str, Any]]:
    """The worker's queues and stats. Asked until it answers: a reply can miss one broadcast's
    5 s window on a loaded machine (seen once in CI)."""
    insp = client.app.control.inspect(destination=[name], timeout=5)
    active = wait_until(lambda: (insp.active_queues() or {}).get(name), timeout=30,
                        what=f"{name} to answer inspect")  # fmt: skip
    stats = wait_until(lambda: (insp.stats() or {}).get(name), timeout=30, what="its stats")
    return sorted(q["name"] for q in active), stats


def test_worker_defaults(launch: LaunchFn, client: CeleryClient) -> None:
    name = node_name("defaults")
    proc = start_worker(launch, name)
    queues, stats = inspect(client, name)
    assert queues == ["default"]
    assert stats["pool"]["max-concurrency"] == 4
    assert stats["pool"]["implementation"] == "celery.concurrency.prefork:TaskPool"
    assert "DEBUG/MainProcess" in proc.output
    assert proc.stop() == 0  # warm shutdown on SIGTERM, exit code 0


def test_worker_user_flags_win(launch: LaunchFn, client: CeleryClient) -> None:
    name = node_name("flags")
    proc = start_worker(launch, name, "-l", "info", "--concurrency=2", "-Q", "default,slow")
    queues, stats = inspect(client, name)
    assert queues == ["default", "slow"]
    assert stats["pool"]["max-concurrency"] == 2
    time.sleep(0.5)
    assert "DEBUG/" not in proc.output
    assert "INFO/MainProcess" in proc.output


def test_worker_script_runs_from_any_directory(launch: LaunchFn, client: CeleryClient) -> None:
    # `python services/run_celery_worker.py` must not need PYTHONPATH or a particular cwd.
    name = node_name("cwd")
    proc = launch("run_celery_worker.py", "-n", name, "--without-mingle", "-l", "info",
                  "--concurrency=1", cwd=REPO_ROOT)  # fmt: skip
    proc.wait_for_output(f"{name} ready.", timeout=60)
    assert client.ping_workers(timeout=2).count(name) == 1


def test_worker_refuses_windows() -> None:
    code = (
        "import os, runpy; os.name = 'nt'; "
        f"runpy.run_path({str(REPO_ROOT / 'services/run_celery_worker.py')!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: This worker script does not support Windows. Please use a POSIX system "
        "(Linux/macOS)."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus-flag"], "Error: No such option '--bogus-flag'"),
        (["--concurrency", "many"], "Invalid value for '-c' / '--concurrency'"),
        (["--pool", "nonsense"], "Invalid value for '-P' / '--pool'"),
    ],
)
def test_worker_bad_flag_names_it_and_exits_2(
    launch: LaunchFn, args: list[str], message: str
) -> None:
    proc = launch("run_celery_worker.py", *args)
    assert proc.proc.wait(timeout=60) == 2
    assert message in proc.output


def test_bad_setting_stops_the_launcher_naming_it(launch: LaunchFn) -> None:
    proc = launch("run_celery_worker.py", env={"WORKER_CONCURRENCY": "lots"})
    assert proc.proc.wait(timeout=60) == 1
    assert "WORKER_CONCURRENCY: Input should be a valid integer" in proc.output
    assert "Traceback" not in proc.output


def test_beat_fires_the_periodic_task(launch: LaunchFn, client: CeleryClient) -> None:
    import redis

    from internal.infra.redis import HEARTBEAT_RAN_KEY

    store = redis.Redis.from_url(client.app.conf.broker_url, decode_responses=True)
    store.delete(HEARTBEAT_RAN_KEY)
    env = {"HEARTBEAT_INTERVAL_SECONDS": "1"}
    start_worker(launch, node_name("beat-consumer"), "-l", "info", "--concurrency=1", env=env)
    beat = launch("run_celery_beat.py", env=env)

    def stamp() -> float | None:
        value = store.get(HEARTBEAT_RAN_KEY)
        return float(str(value)) if value is not None else None

    first = wait_until(stamp, timeout=30, what="a heartbeat")
    later = wait_until(
        lambda: (v := stamp()) is not None and v > first and v,
        timeout=10,
        what="a second heartbeat",
    )
    assert later - first >= 0.5
    assert "Scheduler: Sending due task heartbeat (tasks.heartbeat)" in beat.output
    assert beat.stop() == 0


def test_beat_is_healthy_while_no_worker_runs_its_heartbeat(
    launch: LaunchFn, tmp_path: Path, redis_server: Redis
) -> None:
    """Regression (issue 10, promises): beat's health was the stamp a worker wrote when it ran
    the heartbeat task, which expires after one interval: busy workers made beat look dead."""
    env = {"REDIS_URL": redis_server.url(7), "HEARTBEAT_INTERVAL_SECONDS": "1",
           "BEAT_SCHEDULE_DIR": str(tmp_path / "beat")}  # fmt: skip
    launch("run_celery_beat.py", env=env).wait_for_output("Sending due task heartbeat")

    wait_until(
        lambda: healthcheck("beat", env) == 0, timeout=15, what="beat healthy with no worker"
    )
    time.sleep(3.5)  # three intervals: every heartbeat sent so far has expired unrun
    assert healthcheck("beat", env) == 0


def start_flower_with_auth(launch: LaunchFn) -> str:
    """Flower with basic auth admin:flower-pw on a free port; its URL once it answers."""
    port = free_port()
    launch("run_flower.py", f"--port={port}", env={"FLOWER_BASIC_AUTH": "admin:flower-pw"})
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{url}/healthcheck").status_code == 200, timeout=30, what="flower"
    )
    return url


def test_flower_sees_the_workers_and_takes_basic_auth(launch: LaunchFn, worker: str) -> None:
    url = start_flower_with_auth(launch)
    assert httpx.get(f"{url}/api/workers").status_code == 401

    def listed() -> bool:
        r = httpx.get(f"{url}/api/workers?refresh=1", auth=("admin", "flower-pw"), timeout=10)
        return r.status_code == 200 and worker in r.json()

    wait_until(listed, timeout=30, what="flower to list the worker")


def test_api_launcher_flags_win(launch: LaunchFn) -> None:
    port = free_port()
    proc = launch("run_api.py", "--port", str(port), "--log-level", "warning")
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
        timeout=30,
        what="the API",
    )
    assert "Uvicorn running" not in proc.output  # info lines are off at warning level


def test_the_api_is_live_without_redis_and_ready_only_with_it(
    launch: LaunchFn, redis_server: Redis
) -> None:
    """Kubernetes' probes: liveness (api) asks nothing of Redis, readiness (api-ready) does;
    neither asks for a worker (none runs here)."""
    for redis_url, ready in ((redis_server.url(7), 0), (f"redis://127.0.0.1:{free_port()}/0", 1)):
        port = str(free_port())
        env = {"REDIS_URL": redis_url, "API_PORT": port}
        launch("run_api.py", "--port", port, env=env)
        wait_until(lambda: healthcheck("api", env) == 0, timeout=30, what="the API live")  # noqa: B023
        assert healthcheck("api-ready", env) == ready


def test_flower_refuses_to_start_in_prod_without_credentials(launch: LaunchFn) -> None:
    proc = launch("run_flower.py", env={"APP_ENV": "prod", "REDIS_PASSWORD": "pw"})
    assert proc.proc.wait(timeout=60) == 1
    assert "FLOWER_BASIC_AUTH is required in prod" in proc.output


def test_flower_metrics_ask_for_the_credentials_its_pages_ask_for(launch: LaunchFn) -> None:
    """Regression (issue 10, open doors; flower #1342): with basic auth on, Flower served
    /metrics to anyone. /healthcheck stays open for probes."""
    url = start_flower_with_auth(launch)
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", auth=("admin", "wrong")).status_code == 401
    r = httpx.get(f"{url}/metrics", auth=("admin", "flower-pw"))
    assert r.status_code == 200 and "flower_events_total" in r.text


def test_flower_refuses_an_unknown_flag_naming_it(launch: LaunchFn) -> None:
    proc = launch("run_flower.py", "--port=1", "--no-such-thing=1")
    assert proc.proc.wait(timeout=60) == 2
    assert "no such Flower option: --no-such-thing=1" in proc.output


def test_flower_serves_the_apps_queue_gauges_with_its_own(
    launch: LaunchFn, redis_server: Redis
) -> None:
    """Queue depth, oldest message age, unacked, beat's tick and dead letters at Flower's
    /metrics, next to Flower's own task and worker series (issue 12)."""
    url = redis_server.url(5)
    redis.Redis.from_url(url).flushdb()
    build_celery_client(Settings(redis_url=url)).submit(
        task_name="tasks.add", kwargs={"x": 1, "y": 2}
    )
    port = free_port()
    launch("run_flower.py", f"--port={port}", env={"REDIS_URL": url})
    metrics = wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/metrics").text, timeout=30, what="Flower"
    )
    assert 'celery_queue_length{queue="default"} 1.0' in metrics
    assert 'celery_queue_length{queue="slow"} 0.0' in metrics
    for name in (
        "celery_queue_oldest_message_age_seconds",
        "celery_messages_unacked",
        "app_beat_last_tick_timestamp_seconds",
        "app_dead_letters",
        "flower_events_total",
    ):
        assert name in metrics, name  # fmt: skip


def test_the_api_serves_its_metrics_on_a_port_of_their_own(launch: LaunchFn) -> None:
    port, metrics_port = free_port(), free_port()
    launch("run_api.py", "--port", str(port), env={"API_METRICS_PORT": str(metrics_port)})
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{api}/healthz").status_code == 200, timeout=30, what="the API")
    assert httpx.get(f"{api}/metrics").status_code == 404, "not on the API's own port"
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in metrics
    assert "api_publish_failures_total" in metrics
