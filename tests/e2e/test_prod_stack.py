"""The prod profile, hardened: only prod services, non-root, read-only, secrets, auth."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.support.browser import ARTIFACTS, CHROMIUM, browser_page
from tests.support.processes import wait_until
from tests.support.stack import Stack
from tests.support.stack_fixtures import FLOWER_PASSWORD, FLOWER_USER, REDIS_PASSWORD

pytestmark = pytest.mark.e2e
APP_SERVICES = ("api-prod", "worker-prod", "beat-prod", "flower-prod")


def inspect(container: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return dict(json.loads(out)[0])


def container(stack: Stack, service: str) -> str:
    (cid,) = stack.container_ids(service)
    return cid


def test_only_prod_services_run(prod_stack: Stack) -> None:
    assert prod_stack.running_services() == {"redis-prod", "prometheus-prod", *APP_SERVICES}


def test_redis_runs_as_its_own_user_without_capabilities(prod_stack: Stack) -> None:
    uids = prod_stack.compose(
        "exec", "-T", "redis-prod", "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status"
    ).stdout.split("\n")
    assert "0" not in {line.split()[1] for line in uids if line.strip()}, uids
    host = inspect(container(prod_stack, "redis-prod"))["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]


def test_a_task_completes_through_the_prod_api(prod_stack: Stack) -> None:
    url = f"http://127.0.0.1:{prod_stack.port('api-prod', 8000)}"
    r = httpx.post(f"{url}/api/v1/tasks/add", json={"x": 40, "y": 2}, timeout=10)
    assert r.status_code == 202, r.text
    done = wait_until(
        lambda: (s := httpx.get(r.json()["status_url"], timeout=10).json())["ready"] and s,
        timeout=30,
        what="the task",
    )
    assert done["result"] == 42


def test_flower_requires_credentials(prod_stack: Stack) -> None:
    url = f"http://127.0.0.1:{prod_stack.port('flower-prod', 5555)}"
    assert httpx.get(f"{url}/healthcheck", timeout=10).status_code == 200  # probes need no auth
    assert httpx.get(f"{url}/", timeout=10).status_code == 401
    assert httpx.get(f"{url}/api/workers", timeout=10).status_code == 401
    # Flower's /metrics is open by default even with auth on (flower #1342): not here.
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
    metrics = httpx.get(f"{url}/metrics", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10)
    assert metrics.status_code == 200
    bad = httpx.get(f"{url}/api/workers", auth=(FLOWER_USER, "wrong"), timeout=10)
    assert bad.status_code == 401
    good = httpx.get(f"{url}/api/workers", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10)
    assert good.status_code == 200


@pytest.mark.parametrize("service", APP_SERVICES)
def test_processes_are_non_root_on_a_read_only_root(prod_stack: Stack, service: str) -> None:
    uids = prod_stack.compose(
        "exec", "-T", service, "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status"
    ).stdout.split("\n")
    real_uids = {line.split()[1] for line in uids if line.strip()}
    assert real_uids == {"10001"}, uids
    touch = prod_stack.compose("exec", "-T", service, "touch", "/app/probe", check=False)
    assert touch.returncode != 0 and "Read-only file system" in touch.stderr

    host = inspect(container(prod_stack, service))["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["CapDrop"] == ["ALL"]


def test_no_secret_in_container_environment_or_image(prod_stack: Stack) -> None:
    for service in (*APP_SERVICES, "redis-prod"):
        details = json.dumps(inspect(container(prod_stack, service))["Config"])
        assert REDIS_PASSWORD not in details and FLOWER_PASSWORD not in details, service
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "fastapi-celery:prod"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert REDIS_PASSWORD not in history and "secrets" not in history


def test_redis_is_not_published_and_requires_its_password(prod_stack: Stack) -> None:
    assert prod_stack.compose("port", "redis-prod", "6379", check=False).returncode != 0
    networks = inspect(container(prod_stack, "redis-prod"))["NetworkSettings"]
    assert not any(networks["Ports"].values())
    ip = next(iter(networks["Networks"].values()))["IPAddress"]
    with socket.create_connection((ip, 6379), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        assert conn.recv(64).startswith(b"-NOAUTH")


def test_beat_state_is_written_by_the_non_root_user(prod_stack: Stack) -> None:
    out = prod_stack.compose(
        "exec", "-T", "beat-prod", "stat", "-c", "%u %n", "/var/lib/celery/beat/celerybeat-schedule"
    ).stdout
    assert out.split()[0] == "10001"


def test_no_secret_in_any_log(prod_stack: Stack) -> None:
    logs = prod_stack.compose("logs", "--no-color").stdout
    assert "redis-prod:6379" in logs  # the broker URL is logged, masked
    assert REDIS_PASSWORD not in logs
    assert FLOWER_PASSWORD not in logs


LOG_FIELDS = {"time", "level", "service", "logger", "message"}


def json_lines(stack: Stack, service: str) -> list[dict[str, Any]]:
    out = stack.compose("logs", "--no-color", "--no-log-prefix", service).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines, f"{service} logged nothing"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{service}: not a JSON line: {line!r}")
    return records


def test_every_prod_log_line_is_json_and_one_search_follows_a_request_into_its_task(
    prod_stack: Stack,
) -> None:
    url = f"http://127.0.0.1:{prod_stack.port('api-prod', 8000)}"
    r = httpx.post(
        f"{url}/api/v1/tasks/add",
        json={"x": 40, "y": 2},
        headers={"X-Request-ID": "e2e-logs-42"},
        timeout=10,
    )
    assert r.status_code == 202 and r.headers["x-request-id"] == "e2e-logs-42"
    task_id = r.json()["task_id"]
    assert httpx.get(f"{r.json()['status_url']}?wait=20", timeout=30).json()["result"] == 42

    def worker_lines() -> list[dict[str, Any]] | None:
        lines = [
            rec for rec in json_lines(prod_stack, "worker-prod") if rec.get("task_id") == task_id
        ]
        return lines if any("succeeded" in rec["message"] for rec in lines) else None

    ran = wait_until(worker_lines, timeout=20, what="the worker's lines about the task")
    assert {rec["task_name"] for rec in ran} == {"tasks.add"}
    api = json_lines(prod_stack, "api-prod")
    (submitted,) = [rec for rec in api if rec.get("task_id") == task_id]
    assert submitted["request_id"] == "e2e-logs-42"
    assert any(
        rec.get("request_id") == "e2e-logs-42" and rec["logger"] == "uvicorn.access" for rec in api
    )

    for service in APP_SERVICES:
        records = json_lines(prod_stack, service)
        for rec in records:
            assert rec.keys() >= LOG_FIELDS, (service, rec)
            assert rec["service"] == service.removesuffix("-prod"), (service, rec)
        text = json.dumps(records)
        assert REDIS_PASSWORD not in text and FLOWER_PASSWORD not in text, service
        assert "{'x': 40, 'y': 2}" not in text, f"{service} logged task arguments"
    print(f"\njson logs: {sum(len(json_lines(prod_stack, s)) for s in APP_SERVICES)} lines parsed")


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    return list(answer["data"]["result"])


def alert_state(prometheus: str, name: str) -> str:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return next((a["state"] for a in alerts if a["labels"]["alertname"] == name), "inactive")


def test_prometheus_sees_every_target_a_backlog_and_a_worker_going_down(
    prod_stack: Stack,
) -> None:
    """Last in this module: it stops the worker for a while."""
    prometheus = f"http://127.0.0.1:{prod_stack.port('prometheus-prod', 9090)}"

    def targets_up() -> dict[str, str] | None:
        active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
        health = {t["labels"]["job"]: t["health"] for t in active["activeTargets"]}
        return (
            health
            if set(health) == {"flower", "api", "prometheus"} and set(health.values()) == {"up"}
            else None
        )

    print(f"\nprometheus targets: {wait_until(targets_up, timeout=90, what='every target up')}")
    assert alert_state(prometheus, "WorkerDown") == "inactive"

    prod_stack.compose("stop", "worker-prod")
    stopped = time.monotonic()
    url = f"http://127.0.0.1:{prod_stack.port('api-prod', 8000)}"
    for i in range(5):
        httpx.post(f"{url}/api/v1/tasks/add", json={"x": i, "y": 0}, timeout=10)
    queued = time.monotonic()

    def backlog() -> tuple[float, float] | None:
        length = query(prometheus, 'celery_queue_length{queue="default"}')
        age = query(prometheus, 'celery_queue_oldest_message_age_seconds{queue="default"}')
        if length and float(length[0]["value"][1]) == 5 and age:
            return float(length[0]["value"][1]), float(age[0]["value"][1])
        return None

    length, age = wait_until(backlog, timeout=60, what="the backlog in Prometheus")
    assert 0 <= age <= time.monotonic() - queued + 1
    print(f"backlog: {length:.0f} waiting, oldest {age:.1f} s in Prometheus")

    fired = wait_until(
        lambda: alert_state(prometheus, "WorkerDown") == "firing" or None,
        timeout=150,
        interval=2,
        what="WorkerDown to fire",
    )
    print(f"WorkerDown firing {time.monotonic() - stopped:.0f} s after the stop (for: 1m)")
    assert fired
    if CHROMIUM.exists() or os.environ.get("REQUIRE_BROWSER") == "1":  # never skip midway
        with browser_page() as page:
            page.goto(f"{prometheus}/alerts", wait_until="networkidle")
            if "modern React web UI" in page.content():  # Debian's build: the classic UI only
                page.goto(f"{prometheus}/classic/alerts", wait_until="networkidle")
            page.wait_for_function(
                "document.body.textContent.includes('WorkerDown')", timeout=30_000
            )
            page.screenshot(path=str(ARTIFACTS / "prometheus-alerts.png"))
    prod_stack.compose("start", "worker-prod")
    started = time.monotonic()
    wait_until(
        lambda: alert_state(prometheus, "WorkerDown") == "inactive" or None,
        timeout=120,
        interval=2,
        what="WorkerDown to clear",
    )
    print(f"WorkerDown cleared {time.monotonic() - started:.0f} s after the worker started")
    drained = 'celery_queue_length{queue="default"} == 0'
    wait_until(lambda: query(prometheus, drained), timeout=60, what="the backlog to drain")
