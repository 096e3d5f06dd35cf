"""One trace from the HTTP request through the publish into the worker's run of the task, for
the API's own publisher and for CeleryClient.submit, exported over OTLP to a receiver of the
test's own; the task's JSON log lines carry the trace id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.otlp_receiver import OtlpReceiver, Span
from tests.support.processes import REPO_ROOT, Redis, free_port, wait_until


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """Asked for before ``launch`` in each test, so it outlives the traced processes: they
    export their last spans as they stop (to a gone receiver, the exporter retries for 10 s)."""
    server = OtlpReceiver()
    yield server
    server.stop()


@pytest.fixture
def traced_env(receiver: OtlpReceiver, redis_server: Redis) -> dict[str, str]:
    url = redis_server.url(2)
    redis.Redis.from_url(url).flushdb()
    return {
        "REDIS_URL": url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, not 5 s
        "LOG_FORMAT": "json",
    }


def trace_of(receiver: OtlpReceiver, trace_id: str) -> list[Span]:
    return [s for s in receiver.spans if s.trace_id == trace_id]


def wait_for_run(receiver: OtlpReceiver, trace_id: str, task: str) -> list[Span]:
    def spans() -> list[Span] | None:
        found = trace_of(receiver, trace_id)
        return found if any(s.name == f"run/{task}" for s in found) else None

    return wait_until(spans, timeout=20, what=f"the worker's span of {task}")


CLIENT = """
from opentelemetry import trace
from internal.config.setting import get_settings
from internal.infra.celery import build_celery_client
from pkg.tracing import start_tracing

assert start_tracing("client")
client = build_celery_client(get_settings())
with trace.get_tracer("test").start_as_current_span("client request") as span:
    print(format(span.get_span_context().trace_id, "032x"), flush=True)
    result = client.submit(task_name="tasks.add", kwargs={"x": 2, "y": 2})
assert result.get(timeout=20) == 4
trace.get_tracer_provider().force_flush()
"""


def submit_from_a_client(receiver: OtlpReceiver, env: dict[str, str]) -> dict[str, Span]:
    """Submit tasks.add with CeleryClient.submit from a process of its own, inside a span of
    its own: the spans of that trace by name, once the worker's is in."""
    script = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLIENT)],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0, script.stderr
    trace_id = script.stdout.split()[0]
    return {s.name: s for s in wait_for_run(receiver, trace_id, "tasks.add")}


def test_one_trace_from_the_post_through_the_fast_publisher_into_the_task(
    receiver: OtlpReceiver, traced_env: dict[str, str], launch: LaunchFn, base_env: dict[str, str]
) -> None:
    worker = start_worker(launch, node_name("traced"), "-l", "info", env=traced_env)
    port = free_port()
    launch("run_api.py", "--port", str(port), env=traced_env)
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{api}/healthz").status_code == 200, timeout=30, what="the API")

    answer = httpx.post(f"{api}/api/v1/tasks/add", json={"x": 1, "y": 2})
    assert answer.status_code == 202
    task_id = answer.json()["task_id"]
    assert httpx.get(f"{answer.json()['status_url']}?wait=20").json()["result"] == 3

    def server_span() -> Span | None:
        return next((s for s in receiver.spans if s.name == "POST /api/v1/tasks/add"), None)

    http = wait_until(server_span, timeout=20, what="the API's span of the POST")
    spans = {s.name: s for s in wait_for_run(receiver, http.trace_id, "tasks.add")}
    publish, run = spans["apply_async/tasks.add"], spans["run/tasks.add"]
    assert (http.kind, http.service) == ("SPAN_KIND_SERVER", "api")
    assert (publish.kind, publish.service) == ("SPAN_KIND_PRODUCER", "api")
    assert (run.kind, run.service) == ("SPAN_KIND_CONSUMER", "worker")
    assert run.parent_id == publish.span_id
    assert not [s.name for s in receiver.spans if "healthz" in s.name]  # probes: no traces
    print(f"\nfast path trace {http.trace_id}: {sorted(spans)}")

    # The task's own JSON log lines carry the request's trace id.
    lines = [json.loads(line) for line in worker.output.splitlines() if line.startswith("{")]
    ran = [rec for rec in lines if rec.get("task_id") == task_id and "trace_id" in rec]
    assert ran and {rec["trace_id"] for rec in ran} == {http.trace_id}, lines[-5:]

    # The API makes its publish span itself (pkg.tracing.publish_tracing): the same span the
    # Celery instrumentation makes for CeleryClient.submit, attribute for attribute.
    celery_made = submit_from_a_client(receiver, {**base_env, **traced_env})[
        "apply_async/tasks.add"
    ]
    ours, theirs = dict(publish.attributes), dict(celery_made.attributes)
    assert ours.pop("messaging.message.id") == task_id
    theirs.pop("messaging.message.id")
    assert ours == theirs


def test_one_trace_through_celery_client_submit_into_the_task(
    receiver: OtlpReceiver, traced_env: dict[str, str], launch: LaunchFn, base_env: dict[str, str]
) -> None:
    start_worker(launch, node_name("traced"), "-l", "info", env=traced_env)
    spans = submit_from_a_client(receiver, {**base_env, **traced_env})
    assert spans["client request"].service == "client"
    assert spans["apply_async/tasks.add"].parent_id == spans["client request"].span_id
    assert spans["run/tasks.add"].parent_id == spans["apply_async/tasks.add"].span_id


def test_the_workers_own_redis_traffic_starts_no_trace_but_a_task_keeps_its_redis_span(
    receiver: OtlpReceiver, traced_env: dict[str, str], launch: LaunchFn, base_env: dict[str, str]
) -> None:
    """Regression (issue 12): every sampler on (the default), an idle worker had exported about
    ten traces a second of a single Redis span each (lease renewals, polls, heartbeats). The
    plumbing's Redis commands (pkg/untraced_redis.py) now get spans only inside a recorded
    span: the stored result of a sampled task is still there, under the task's run."""
    start_worker(launch, node_name("traced"), "-l", "info", env=traced_env)
    time.sleep(3)  # idle: the worker renews its leases, polls and sends heartbeats
    spans = submit_from_a_client(receiver, {**base_env, **traced_env})
    run = spans["run/tasks.add"]
    stored = [s for s in trace_of(receiver, run.trace_id) if s.parent_id == run.span_id]
    assert "EVALSHA" in {s.name for s in stored}, stored  # the script that stores the result
    roots = [s.name for s in receiver.spans if s.service == "worker" and not s.parent_id]
    print(f"\n{len(receiver.spans)} spans exported, {len(roots)} of the worker starting a trace")
    assert roots == []
