"""pkg.tracing.context_carrier writes the same headers as OpenTelemetry's own ``inject``,
whether it writes ``traceparent`` itself (default propagators, no baggage, no trace state) or
hands over to ``inject``."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from pkg.tracing import context_carrier

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7


def context_of(
    flags: int, trace_state: TraceState | None = None, with_baggage: bool = False
) -> Context:
    span_context = SpanContext(
        TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(flags), trace_state=trace_state
    )
    ctx = trace.set_span_in_context(NonRecordingSpan(span_context), Context())
    return baggage.set_baggage("tenant", "acme", ctx) if with_baggage else ctx


CASES = {
    "not sampled": context_of(0x00),
    "not sampled, random trace id flag": context_of(0x02),
    "sampled": context_of(0x01),
    "trace state": context_of(0x00, TraceState([("vendor", "value")])),
    "baggage": context_of(0x00, with_baggage=True),
}


@pytest.mark.parametrize("ctx", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("propagators", [None, "tracecontext"], ids=["default", "configured"])
def test_the_headers_are_injects(
    ctx: Context, propagators: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if propagators is None:
        monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
    else:
        monkeypatch.setenv("OTEL_PROPAGATORS", propagators)
    expected: dict[str, Any] = {}
    propagate.inject(expected, context=ctx)
    carried: dict[str, Any] = {}
    context_carrier()(carried, trace.get_current_span(ctx).get_span_context(), ctx)
    assert carried == expected
    assert carried["traceparent"].startswith(
        "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-"
    )


def test_the_plain_case_does_not_go_through_inject(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_PROPAGATORS", raising=False)
    carry = context_carrier()

    def inject(*_: object, **__: object) -> None:
        raise AssertionError("inject called")

    monkeypatch.setattr(propagate, "inject", inject)
    ctx = CASES["not sampled"]
    carried: dict[str, Any] = {}
    carry(carried, trace.get_current_span(ctx).get_span_context(), ctx)
    assert carried == {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-00"}
