"""TraceRequests on a small FastAPI app, with the OpenTelemetry SDK and an in-memory exporter:
the span of a request, a caller's trace continued, failures marked, probes and unsampled
requests left without spans while the context still reaches the endpoint, and the
instrumentations skipped under a request whose children the sampler would drop."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler

from pkg.trace_requests import TraceRequests

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def app_traced(sampler: Sampler) -> tuple[FastAPI, InMemorySpanExporter, list[str]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen: list[str] = []  # the trace id the endpoint runs in
    app = FastAPI()

    app.state.instrumented = []  # whether instrumentations (Redis, ...) run in the endpoint

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        seen.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        app.state.instrumented.append(is_instrumentation_enabled())
        if item_id == 0:
            raise RuntimeError("boom")
        return {"item_id": item_id}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(TraceRequests, skip_paths=frozenset({"/healthz"}), tracer_provider=provider)
    return app, exporter, seen


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> int:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return (await client.get(path, headers=headers)).status_code


@pytest.mark.anyio
async def test_a_request_gets_a_server_span_named_by_its_route() -> None:
    app, exporter, _ = app_traced(ALWAYS_ON)
    assert await get(app, "/items/7?q=1") == 200
    (span,) = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("GET /items/{item_id}", trace.SpanKind.SERVER)
    assert span.attributes is not None
    assert dict(span.attributes) == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "url.path": "/items/7",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.response.status_code": 200,
    }
    assert span.status.status_code == trace.StatusCode.UNSET


@pytest.mark.anyio
async def test_a_callers_trace_is_continued() -> None:
    app, exporter, seen = app_traced(ALWAYS_ON)
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    assert await get(app, "/items/7", {"traceparent": traceparent}) == 200
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == CALLER_TRACE == seen[0]
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN


@pytest.mark.anyio
async def test_a_failed_request_is_marked_an_error() -> None:
    app, exporter, _ = app_traced(ALWAYS_ON)
    assert await get(app, "/items/0") == 500
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


@pytest.mark.anyio
async def test_probes_get_no_span() -> None:
    app, exporter, _ = app_traced(ALWAYS_ON)
    assert await get(app, "/healthz") == 200
    assert exporter.get_finished_spans() == ()


@pytest.mark.anyio
async def test_an_unsampled_request_records_nothing_but_carries_its_context() -> None:
    app, exporter, seen = app_traced(ALWAYS_OFF)
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"
    assert await get(app, "/items/7", {"traceparent": traceparent}) == 200
    assert exporter.get_finished_spans() == ()
    assert seen == [CALLER_TRACE]  # a publish from the endpoint carries the caller's trace


@pytest.mark.anyio
async def test_under_a_dropped_request_the_instrumentations_make_no_spans() -> None:
    # A parent-based sampler drops every child of a dropped request: the Redis instrumentation
    # (which formats a pipeline's commands before it looks at sampling) need not run.
    app, exporter, seen = app_traced(ParentBased(ALWAYS_OFF))
    assert await get(app, "/items/7") == 200
    assert exporter.get_finished_spans() == ()
    assert len(seen) == 1 and seen[0] != "0" * 32  # the request's own trace id is carried
    assert app.state.instrumented == [False]


@pytest.mark.anyio
@pytest.mark.parametrize("sampler", [ParentBased(ALWAYS_ON), ALWAYS_OFF], ids=["sampled", "own"])
async def test_otherwise_the_instrumentations_run(sampler: Sampler) -> None:
    # Sampled; or dropped by a sampler that decides each span on its own, which may keep a
    # child: the instrumentations run as usual.
    app, _, _ = app_traced(sampler)
    assert await get(app, "/items/7") == 200
    assert app.state.instrumented == [True]
