"""The HTTP API served by its launcher, with a real worker and Redis behind it."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import LaunchFn
from tests.support.processes import free_port, wait_until

JSON = {"content-type": "application/json"}


def submit(api_url: str, name: str, body: Any) -> str:
    r = httpx.post(f"{api_url}/api/v1/tasks/{name}", json=body)
    assert r.status_code == 202, r.text
    data = r.json()
    assert data["status_url"] == f"{api_url}/api/v1/tasks/{data['task_id']}"
    return str(data["task_id"])


def state(api_url: str, task_id: str) -> dict[str, Any]:
    r = httpx.get(f"{api_url}/api/v1/tasks/{task_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_ready(api_url: str, task_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_until(
        lambda: (s := state(api_url, task_id))["ready"] and s, timeout=timeout, what=task_id
    )


def test_submit_and_read_result(api_url: str) -> None:
    task_id = submit(api_url, "add", {"x": 2, "y": 40})
    done = wait_ready(api_url, task_id)
    assert done["state"] == "SUCCESS"
    assert done["result"] == 42
    assert done["task_name"] == "add"
    assert done["submitted_at"] <= done["date_done"]


def test_long_task_reports_rising_progress(api_url: str) -> None:
    task_id = submit(api_url, "long_report", {"steps": 6, "step_seconds": 0.4})
    seen: list[float] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = state(api_url, task_id)
        if s["state"] == "PROGRESS":
            seen.append(s["progress"]["percent"])
        if s["ready"]:
            break
        time.sleep(0.1)
    assert s["state"] == "SUCCESS" and s["result"]["complete"] is True
    assert len(set(seen)) >= 3, seen
    assert seen == sorted(seen)


def test_transient_failures_are_retried(api_url: str) -> None:
    task_id = submit(api_url, "flaky_fetch", {"fail_times": 2})
    done = wait_ready(api_url, task_id, timeout=60)
    assert done["state"] == "SUCCESS"
    assert done["result"] == {"attempts": 3}


def test_revoke_terminates_a_running_task(api_url: str) -> None:
    task_id = submit(api_url, "long_report", {"steps": 100, "step_seconds": 0.2})
    wait_until(lambda: state(api_url, task_id)["state"] == "PROGRESS", timeout=30, what="start")
    r = httpx.delete(f"{api_url}/api/v1/tasks/{task_id}", params={"terminate": "true"})
    assert r.status_code == 202, r.text
    assert r.json() == {"task_id": task_id, "revoked": True, "terminate": True}
    done = wait_ready(api_url, task_id)
    assert done["state"] == "REVOKED"


def test_revoke_of_a_finished_task_is_a_conflict(api_url: str) -> None:
    task_id = submit(api_url, "add", {"x": 1, "y": 1})
    wait_ready(api_url, task_id)
    r = httpx.delete(f"{api_url}/api/v1/tasks/{task_id}")
    assert r.status_code == 409
    assert "already finished (SUCCESS)" in r.json()["detail"]


@pytest.mark.parametrize("name", ["nope", "celery.backend_cleanup", "tasks.add", "heartbeat"])
def test_unknown_or_private_task_is_404(api_url: str, name: str) -> None:
    r = httpx.post(f"{api_url}/api/v1/tasks/{name}", json={})
    assert r.status_code == 404
    assert f"unknown task {name!r}" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"x": "two", "y": 3}', "int_type"),
        ('{"x": 2}', "missing"),
        ('{"x": 2, "y": 3, "z": 4}', "extra_forbidden"),
        ('{"x": 2.5, "y": 3}', "int_type"),
        ('{"x": 10000000000000, "y": 3}', "less_than_equal"),
        ('{"x": 2, "y": ', "json_invalid"),
        ("[1, 2]", "model_attributes_type"),
    ],
)
def test_invalid_body_is_422_with_the_reason(api_url: str, body: str, problem: str) -> None:
    r = httpx.post(f"{api_url}/api/v1/tasks/add", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert problem in {e["type"] for e in r.json()["detail"]}


def test_oversize_body_is_413(api_url: str) -> None:
    big = b'{"x": 1, "y": 1, "pad": "' + b"a" * 70_000 + b'"}'
    r = httpx.post(f"{api_url}/api/v1/tasks/add", content=big, headers=JSON)
    assert r.status_code == 413
    assert "larger than 65536 bytes" in r.json()["detail"]


def test_oversize_streamed_body_is_413(api_url: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"x": 1, "y": 1, "pad": "'
        for _ in range(20):
            yield b"a" * 8192
        yield b'"}'

    r = httpx.post(f"{api_url}/api/v1/tasks/add", content=chunks(), headers=JSON)
    assert r.status_code == 413


def test_task_ids_are_validated_and_unknown_ones_are_404(api_url: str) -> None:
    assert httpx.get(f"{api_url}/api/v1/tasks/not-a-uuid").status_code == 422
    unknown = uuid.uuid4()
    r = httpx.get(f"{api_url}/api/v1/tasks/{unknown}")
    assert r.status_code == 404
    assert r.json()["detail"] == f"no task {unknown} was submitted here"
    assert httpx.delete(f"{api_url}/api/v1/tasks/{unknown}").status_code == 404


def test_ready_when_broker_and_worker_answer(api_url: str) -> None:
    r = httpx.get(f"{api_url}/readyz", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["broker"] == "ok"


def test_not_ready_without_workers(launch: LaunchFn, redis_server: Any) -> None:
    # DB 15 of the same Redis: kombu prefixes broadcast channels per DB, so no worker hears it.
    port = free_port()
    launch("run_api.py", "--port", str(port), env={"REDIS_URL": redis_server.url(15)})
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30, what="api")
    r = httpx.get(f"{url}/readyz", timeout=10)
    assert r.status_code == 503
    assert r.json() == {
        "status": "unavailable",
        "checks": {"broker": "ok", "workers": "no worker answered within 1 s"},
    }


def test_openapi_documents_each_public_task_body(api_url: str) -> None:
    spec = httpx.get(f"{api_url}/openapi.json").json()
    body = spec["paths"]["/api/v1/tasks/add"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["$ref"].endswith("/AddBody")
    assert "/api/v1/tasks/long_report" in spec["paths"]


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: a broker that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


@pytest.mark.parametrize("broker", ["refused", "hanging"])
def test_broker_down_is_503_and_never_blocks_the_loop(
    launch: LaunchFn, broker: str, blackhole_port: int
) -> None:
    dead_port = free_port() if broker == "refused" else blackhole_port
    port = free_port()
    launch(
        "run_api.py",
        "--port", str(port),
        env={"REDIS_URL": f"redis://127.0.0.1:{dead_port}/0", "API_BROKER_TIMEOUT_SECONDS": "2"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30, what="api")

    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        post = pool.submit(httpx.post, f"{url}/api/v1/tasks/add", json={"x": 1, "y": 2}, timeout=30)
        time.sleep(0.3)
        health_started = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        health_seconds = time.monotonic() - health_started
        r = post.result()
        post_seconds = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert r.json()["detail"].startswith("broker unavailable: submitting the task")
    assert post_seconds < 10  # answered, not hung
    assert health_seconds < 1, "the event loop was blocked by the publish"
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["workers"] == "not checked: broker unavailable"
    got = httpx.get(f"{url}/api/v1/tasks/{uuid.uuid4()}", timeout=10)
    assert got.status_code == 503


def test_wait_answers_as_soon_as_the_task_is_done(api_url: str) -> None:
    task_id = submit(api_url, "add", {"x": 20, "y": 22})
    started = time.monotonic()
    r = httpx.get(f"{api_url}/api/v1/tasks/{task_id}", params={"wait": 20}, timeout=30)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["result"]) == ("SUCCESS", 42)  # one call, no polling
    assert time.monotonic() - started < 10


def test_wait_gives_up_after_the_wait_with_the_current_state(api_url: str) -> None:
    task_id = submit(api_url, "long_report", {"steps": 20, "step_seconds": 0.5})
    started = time.monotonic()
    r = httpx.get(f"{api_url}/api/v1/tasks/{task_id}", params={"wait": 1}, timeout=30)
    waited = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["ready"] is False
    assert r.json()["state"] in ("PENDING", "STARTED", "PROGRESS")
    assert 1 <= waited < 5
    httpx.delete(f"{api_url}/api/v1/tasks/{task_id}", params={"terminate": "true"})


@pytest.mark.parametrize("wait", ["-1", "31", "soon"])
def test_wait_out_of_range_is_422(api_url: str, wait: str) -> None:
    task_id = submit(api_url, "add", {"x": 1, "y": 1})
    r = httpx.get(f"{api_url}/api/v1/tasks/{task_id}", params={"wait": wait})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "wait"]
