"""The API in process (httpx's ASGI transport) on the test Redis, no worker: what each endpoint
answers and what it writes, in milliseconds per test. The real-process tests
(tests/integration/test_api.py) run the same app under uvicorn with workers behind it."""

from __future__ import annotations

import json

import httpx
import pytest
import redis
from prometheus_client import REGISTRY

from internal.api.app import create_app
from internal.api.dependencies import task_store
from internal.api.task_store import TaskStore
from internal.config.setting import Settings
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio
ADD = "/api/v1/tasks/add"


async def test_submit_queues_the_message_and_records_the_task(
    api: httpx.AsyncClient, store: redis.Redis
) -> None:
    answer = await api.post(ADD, json={"x": 2, "y": 3})
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    assert answer.json()["status_url"] == f"http://api.test/api/v1/tasks/{task_id}"
    (raw,) = store.lrange("default", 0, -1)
    assert json.loads(raw)["headers"]["id"] == task_id
    state = (await api.get(f"/api/v1/tasks/{task_id}")).json()
    assert (state["task_name"], state["state"], state["ready"]) == ("add", "PENDING", False)


async def test_a_task_goes_to_its_declared_queue(
    api: httpx.AsyncClient, store: redis.Redis
) -> None:
    assert (await api.post("/api/v1/tasks/long_report", json={"steps": 1})).status_code == 202
    assert (store.llen("slow"), store.llen("default")) == (1, 0)


@pytest.mark.parametrize("name", ["nope", "heartbeat", "tasks.add"])
async def test_unknown_or_private_task_is_404(api: httpx.AsyncClient, name: str) -> None:
    answer = await api.post(f"/api/v1/tasks/{name}", json={})
    assert answer.status_code == 404
    assert "public tasks: add, flaky_fetch, long_report, record_order" in answer.text


@pytest.mark.parametrize(
    ("body", "field"),
    [({"x": 1}, "y"), ({"x": "1", "y": 2}, "x"), ({"x": 1, "y": 2, "z": 3}, "z"),
     ({"x": 10**13, "y": 1}, "x")],
)  # fmt: skip
async def test_a_body_the_declaration_refuses_is_422_naming_the_field(
    api: httpx.AsyncClient, store: redis.Redis, body: dict[str, object], field: str
) -> None:
    answer = await api.post(ADD, json=body)
    assert answer.status_code == 422
    assert field in json.dumps(answer.json()["detail"])
    assert store.llen("default") == 0


async def test_a_body_over_the_limit_is_413(api: httpx.AsyncClient) -> None:
    answer = await api.post(ADD, content=b"{" + b" " * 2000 + b"}")
    assert answer.status_code == 413
    assert answer.json() == {"detail": "request body larger than 1024 bytes"}


async def test_the_same_idempotency_key_queues_once(
    api: httpx.AsyncClient, store: redis.Redis
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await api.post(ADD, json={"x": 1, "y": 2}, headers=headers)
    again = await api.post(ADD, json={"x": 1, "y": 2}, headers=headers)
    assert first.json()["task_id"] == again.json()["task_id"]
    other = await api.post(ADD, json={"x": 9, "y": 2}, headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.text
    assert store.llen("default") == 1


async def test_ids_never_issued_are_404_and_malformed_ones_422(api: httpx.AsyncClient) -> None:
    unknown = "/api/v1/tasks/00000000-0000-4000-8000-000000000000"
    assert (await api.get(unknown)).status_code == 404
    assert (await api.delete(unknown)).status_code == 404
    assert (await api.get("/api/v1/tasks/not-a-uuid")).status_code == 422


async def test_not_ready_without_a_worker(api: httpx.AsyncClient) -> None:
    answer = await api.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"broker": "ok", "workers": "no worker answered within 0.2 s"}


async def test_a_broker_that_refuses_connections_is_503_through_an_overridden_store(
    settings: Settings,
) -> None:
    app = create_app(settings)
    down = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", api_broker_timeout_seconds=1)
    broken = TaskStore(down, app.state.task_store.client)
    app.dependency_overrides[task_store] = lambda: broken
    transport = httpx.ASGITransport(app=app)
    failures = REGISTRY.get_sample_value("api_publish_failures_total") or 0.0
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        answer = await client.post(ADD, json={"x": 1, "y": 2})
    assert REGISTRY.get_sample_value("api_publish_failures_total") == failures + 1
    await broken.aclose()
    await app.state.task_store.aclose()
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("broker unavailable: submitting the task")


async def test_requests_are_counted_by_route_template_and_status(api: httpx.AsyncClient) -> None:
    def count(route: str, status: str) -> float:
        labels = {"method": "POST" if "add" in route else "GET", "route": route, "status": status}
        return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0

    task_route = "/api/v1/tasks/{task_id}"
    before = count("/api/v1/tasks/add", "202"), count(task_route, "404")
    for _ in range(2):  # the second through the series the middleware keeps
        await api.post(ADD, json={"x": 1, "y": 2})
    await api.get("/api/v1/tasks/00000000-0000-4000-8000-000000000000")
    assert count("/api/v1/tasks/add", "202") == before[0] + 2
    assert count(task_route, "404") == before[1] + 1, "ids never make series of their own"
    latency = {"method": "POST", "route": "/api/v1/tasks/add"}
    assert REGISTRY.get_sample_value("http_request_duration_seconds_count", latency)
