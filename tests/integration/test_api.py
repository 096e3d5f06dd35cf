"""The HTTP API served by its launcher, with a real worker and Redis behind it."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import Redis, free_port, wait_until

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


def start_api(launch: LaunchFn, env: dict[str, str]) -> str:
    """An API of its own (on its own settings) on a free port; returns its URL once up."""
    port = free_port()
    launch("run_api.py", "--port", str(port), env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30, what="API")
    return url


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
    url = start_api(launch, {"REDIS_URL": redis_server.url(15)})
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
    url = start_api(
        launch, {"REDIS_URL": f"redis://127.0.0.1:{dead_port}/0", "API_BROKER_TIMEOUT_SECONDS": "2"}
    )

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


def test_status_url_comes_from_the_public_base_url_not_the_host_header(
    launch: LaunchFn, api_url: str, worker: str
) -> None:
    """Regression (issue 10, open doors): status_url echoed any Host header, with the scheme
    uvicorn saw (``http://`` behind a TLS proxy)."""
    # Without PUBLIC_BASE_URL: the request decides, and the proxy's scheme counts only from an
    # address uvicorn trusts (FORWARDED_ALLOW_IPS; 127.0.0.1 by default).
    r = httpx.post(f"{api_url}/api/v1/tasks/add", json={"x": 1, "y": 1},
                   headers={"x-forwarded-proto": "https"})  # fmt: skip
    assert r.json()["status_url"].startswith(f"https://127.0.0.1:{api_url.rsplit(':', 1)[1]}/")
    url = start_api(launch, {"PUBLIC_BASE_URL": "https://api.example.com/jobs/"})
    r = httpx.post(f"{url}/api/v1/tasks/add", json={"x": 1, "y": 1},
                   headers={"host": "evil.example", "x-forwarded-proto": "http"})  # fmt: skip
    task_id = r.json()["task_id"]
    assert r.json()["status_url"] == f"https://api.example.com/jobs/api/v1/tasks/{task_id}"


def test_waiting_clients_never_starve_submissions(api_url: str) -> None:
    """Regression (issue 10, defect 2): every ``?wait=`` held a Redis connection of the pool
    that submissions use (100, failing at once when full): 150 waiters made POSTs 503. Now
    all waiters share one pub/sub connection."""
    import asyncio

    slow = submit(api_url, "long_report", {"steps": 8, "step_seconds": 1.0})

    async def scenario() -> tuple[list[int], list[int]]:
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=60) as http:
            waits = [
                asyncio.create_task(http.get(f"/api/v1/tasks/{slow}", params={"wait": 20}))
                for _ in range(200)
            ]
            await asyncio.sleep(2)  # every waiter is in
            posts = []
            for i in range(40):
                posts.append(await http.post("/api/v1/tasks/add", json={"x": i, "y": 1}))
                await asyncio.sleep(0.05)
            waited = await asyncio.gather(*waits)
        return [r.status_code for r in posts], [r.status_code for r in waited]

    posts, waited = asyncio.run(scenario())
    assert posts == [202] * 40
    assert waited == [200] * 200


def test_past_the_waiter_cap_a_long_poll_is_429_with_a_reason(
    launch: LaunchFn, api_url: str
) -> None:
    import asyncio

    url = start_api(launch, {"API_MAX_WAITERS": "5"})
    slow = submit(url, "long_report", {"steps": 4, "step_seconds": 1.0})

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            waits = [
                asyncio.create_task(http.get(f"/api/v1/tasks/{slow}", params={"wait": 10}))
                for _ in range(5)
            ]
            await asyncio.sleep(1)
            extra = await http.get(f"/api/v1/tasks/{slow}", params={"wait": 10})
            return [extra, *await asyncio.gather(*waits)]

    extra, *waited = asyncio.run(scenario())
    assert extra.status_code == 429 and "API_MAX_WAITERS=5" in extra.json()["detail"]
    assert extra.headers["retry-after"] == "1"
    assert [r.json()["state"] for r in waited] == ["SUCCESS"] * 5
    assert httpx.get(f"{url}/api/v1/tasks/{slow}").status_code == 200  # no wait: no cap


def test_a_retry_with_the_same_idempotency_key_never_queues_twice(
    launch: LaunchFn, tmp_path: Path
) -> None:
    """Regression (issue 10, defect 3): with Redis stalled past the publish deadline the
    caller got 503 though its task landed, so a retry queued a duplicate; and a caller queued
    behind the stalled batch waited ~1.8x the deadline. Now each caller has its own deadline,
    and a retry with the same Idempotency-Key answers with the first task's id."""
    import asyncio

    import redis

    from internal.infra.redis import ORDER_ATTEMPTS_KEY

    server = Redis(tmp_path / "stalled-redis")
    try:
        env = {"REDIS_URL": server.url(0), "API_BROKER_TIMEOUT_SECONDS": "1"}
        url = start_api(launch, env)
        order = {"order_id": "idem-1", "work_seconds": 0}
        key = {"Idempotency-Key": str(uuid.uuid4())}

        async def during_a_stall() -> list[tuple[int, float]]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                await http.get("/healthz")  # connected before Redis stalls

                async def post(delay: float, body: dict[str, Any]) -> tuple[int, float]:
                    await asyncio.sleep(delay)
                    started = time.monotonic()
                    r = await http.post("/api/v1/tasks/record_order", json=body, headers=key)
                    return r.status_code, time.monotonic() - started

                stall = asyncio.to_thread(redis.Redis(port=server.port).execute_command,
                                          "DEBUG", "SLEEP", "3")  # fmt: skip
                return list(await asyncio.gather(stall, post(0.3, order), post(0.8, order)))[1:]

        answers = asyncio.run(during_a_stall())
        assert [code for code, _ in answers] == [503, 503], answers
        assert all(took < 1.6 for _, took in answers), answers  # each caller's own deadline
        retry = httpx.post(f"{url}/api/v1/tasks/record_order", json=order, headers=key)
        assert retry.status_code == 202, retry.text
        again = httpx.post(f"{url}/api/v1/tasks/record_order", json=order, headers=key)
        assert again.json()["task_id"] == retry.json()["task_id"]
        store = redis.Redis(port=server.port)
        assert store.llen("default") == 1  # queued once, by the stalled first attempt
        start_worker(launch, node_name("idem"), "-Q", "default", "--concurrency=1", env=env)
        wait_until(lambda: store.hget(ORDER_ATTEMPTS_KEY, "idem-1"), timeout=30, what="ran")
        time.sleep(1)
        assert store.hget(ORDER_ATTEMPTS_KEY, "idem-1") == b"1"
        reused = httpx.post(f"{url}/api/v1/tasks/add", json={"x": 1, "y": 2}, headers=key)
        assert reused.status_code == 422 and "Idempotency-Key" in reused.json()["detail"]
        bad = httpx.post(f"{url}/api/v1/tasks/add", json={"x": 1, "y": 2},
                         headers={"Idempotency-Key": "has spaces"})  # fmt: skip
        assert bad.status_code == 422
    finally:
        server.stop()


def test_a_revoke_sent_with_no_worker_running_holds_after_workers_start(
    launch: LaunchFn, redis_server: Redis
) -> None:
    """Regression (issue 10, promises): a revoke is a broadcast to the workers connected at
    that moment; with none connected (or after a restart) it was lost and the task ran."""
    import redis

    from internal.infra.redis import ORDER_ATTEMPTS_KEY

    env = {"REDIS_URL": redis_server.url(10)}
    store = redis.Redis.from_url(env["REDIS_URL"])
    store.flushdb()
    url = start_api(launch, env)
    revoked = submit(url, "record_order", {"order_id": "revoked-1"})
    kept = submit(url, "record_order", {"order_id": "kept-1"})
    assert httpx.delete(f"{url}/api/v1/tasks/{revoked}").status_code == 202
    start_worker(launch, node_name("after-revoke"), "-Q", "default", "--concurrency=1", env=env)
    assert wait_ready(url, kept)["state"] == "SUCCESS"
    assert wait_ready(url, revoked)["state"] == "REVOKED"
    assert store.hget(ORDER_ATTEMPTS_KEY, "revoked-1") is None


def test_the_apis_record_of_a_task_lives_as_long_as_its_result(
    launch: LaunchFn, redis_server: Redis
) -> None:
    """Regression (issue 10, promises): the API's record expired 24 h after submission and
    the result 1 day after completion, so a task that ran late answered 404 "never
    submitted" while its result was still there."""
    import redis

    env = {"REDIS_URL": redis_server.url(11)}
    store = redis.Redis.from_url(env["REDIS_URL"])
    store.flushdb()
    url = start_api(launch, env)
    task_id = submit(url, "add", {"x": 1, "y": 2})
    record = f"app:api:task:{task_id}"
    assert store.ttl(record) > 6 * 24 * 3600  # waiting in the queue: kept a week
    start_worker(launch, node_name("ttl"), "-Q", "default", "--concurrency=1", env=env)
    assert wait_ready(url, task_id)["result"] == 3
    result_ttl = store.ttl(f"celery-task-meta-{task_id}")
    assert 23 * 3600 < result_ttl <= 24 * 3600
    assert abs(store.ttl(record) - result_ttl) <= 2  # from now on: expires with the result
