"""TaskSpans, through Celery's own task_prerun/task_postrun signals on a real task, with the
OpenTelemetry SDK and an in-memory exporter: a task published from a dropped trace runs in
that trace's context without a span being built (the sampler is not even asked); a sampled
one gets the instrumentation's span, under the publisher's.

Regression (issue 12): the Celery instrumentation built and ended a span for every task, to
have the sampler drop it 99 times in 100 at 1% sampling (bench/README.md, row 6)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, signals
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from pkg.task_spans import TaskSpans

PUBLISHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
PUBLISHER_SPAN = "b7ad6b7169203331"


class CountingSampler(ParentBased):
    def __init__(self) -> None:
        super().__init__(ALWAYS_ON)
        self.asked = 0

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        self.asked += 1
        return super().should_sample(*args, **kwargs)


@pytest.fixture
def traced() -> Iterator[tuple[CountingSampler, InMemorySpanExporter]]:
    sampler, exporter = CountingSampler(), InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    TaskSpans().instrument(tracer_provider=provider)
    try:
        yield sampler, exporter
    finally:
        TaskSpans().uninstrument()


def run_task(flags: str) -> tuple[str, bool]:
    """Fire prerun and postrun for a task whose message carries the publisher's context with
    these trace flags; the trace id and the recording flag of the span it ran in."""
    app = Celery("spans", set_as_current=False)

    @app.task(name="tasks.noop", shared=False)  # type: ignore[untyped-decorator]
    def noop() -> None:
        return None

    headers = {"traceparent": f"00-{PUBLISHER_TRACE}-{PUBLISHER_SPAN}-{flags}", "id": "t1"}
    noop.push_request(**headers)
    try:
        signals.task_prerun.send(sender=noop, task_id="t1", task=noop, args=(), kwargs={})
        span = trace.get_current_span()
        seen = format(span.get_span_context().trace_id, "032x"), span.is_recording()
        signals.task_postrun.send(
            sender=noop, task_id="t1", task=noop, args=(), kwargs={}, retval=None, state="SUCCESS"
        )
    finally:
        noop.pop_request()
    assert not trace.get_current_span().get_span_context().is_valid  # context restored
    return seen


def test_a_task_from_a_dropped_trace_runs_in_its_context_and_builds_no_span(
    traced: tuple[CountingSampler, InMemorySpanExporter],
) -> None:
    sampler, exporter = traced
    assert run_task("00") == (PUBLISHER_TRACE, False)
    assert sampler.asked == 0
    assert exporter.get_finished_spans() == ()


def test_a_sampled_task_gets_the_instrumentations_span_under_the_publisher(
    traced: tuple[CountingSampler, InMemorySpanExporter],
) -> None:
    sampler, exporter = traced
    assert run_task("01") == (PUBLISHER_TRACE, True)
    (span,) = exporter.get_finished_spans()
    assert span.name == "run/tasks.noop"
    assert span.parent is not None and format(span.parent.span_id, "016x") == PUBLISHER_SPAN
    assert sampler.asked == 1
