"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and every
process exports its spans there over OTLP/HTTP; the other standard ``OTEL_*`` variables
(``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...) apply as
the SDK reads them. Celery and Redis are instrumented by the OpenTelemetry instrumentations
(Celery's through ``pkg.task_spans.TaskSpans``), the API's requests by
``pkg.trace_requests.TraceRequests``. A publish carries its trace
context in the message's top-level headers (``traceparent``), where the Celery instrumentation
of the worker reads it: Celery's own publish puts it there (the instrumentation's publish
signal handlers), and so does the API's publisher (``publish_tracing``). So one trace runs from
the HTTP request through the publish into the worker's run of the task.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

# A publish span for a publisher of our own: (task name, task id, queue, message headers).
PublishTracing = Callable[[str, str, str, dict[str, Any]], AbstractContextManager[object]]

# What a publish without a span runs in.
NO_SPAN = nullcontext()

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_configured() -> bool:
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return not disabled and any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def start_tracing(service: str, *, celery: bool = True) -> bool:
    """Export this process's spans (named ``service`` unless OTEL_SERVICE_NAME says
    otherwise) and instrument Celery and Redis; nothing, and False, without an endpoint.

    ``celery=False`` leaves Celery uninstrumented, for a process that runs no tasks and
    publishes only with ``AsyncTaskPublisher``: its publish spans then come from
    ``publish_tracing`` (a ``CeleryClient.submit`` there carries no trace context)."""
    if not tracing_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    # The batch processor restarts its export thread in forked children (prefork pool).
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if celery:
        from pkg.task_spans import TaskSpans  # the Celery instrumentation, minus dropped spans

        TaskSpans().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    return True


def sampler_follows_parent(provider: object) -> bool:
    """Whether ``provider`` samples a span as its parent was (the SDK's ParentBased
    samplers, the default): then nothing under a dropped span is recorded, and need not be
    made."""
    from opentelemetry.sdk.trace.sampling import ParentBased

    return isinstance(getattr(provider, "sampler", None), ParentBased)


# The propagators OpenTelemetry configures by default (OTEL_PROPAGATORS unset): W3C trace
# context and W3C baggage, and the headers they write.
DEFAULT_PROPAGATORS = "tracecontext,baggage"
W3C_FIELDS = frozenset({"traceparent", "tracestate", "baggage"})


def context_carrier() -> Callable[[dict[str, Any], Any, Any], None]:
    """``carry(headers, span_context, ctx)``: the headers ``propagate.inject`` writes for
    ``ctx``, whose span's context is ``span_context``.

    With the default propagators, a context without baggage or trace state carries one header,
    ``traceparent``, written here directly: ``inject`` goes through three propagators to
    write it, a third of what tracing adds to a request the sampler dropped (bench/README.md).
    Anything else goes through ``inject`` (tested to give the same headers)."""
    from opentelemetry import baggage, propagate

    configured = os.environ.get("OTEL_PROPAGATORS", DEFAULT_PROPAGATORS).replace(" ", "")
    w3c_only = configured == DEFAULT_PROPAGATORS and (
        propagate.get_global_textmap().fields == W3C_FIELDS
    )

    def carry(headers: dict[str, Any], span_context: Any, ctx: Any) -> None:
        if w3c_only and not span_context.trace_state and not baggage.get_all(ctx):
            headers["traceparent"] = (
                f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
                f"-{span_context.trace_flags:02x}"
            )
        else:
            propagate.inject(headers, context=ctx)

    return carry


def publish_tracing() -> PublishTracing | None:
    """The publish spans of ``AsyncTaskPublisher`` where tracing runs without the Celery
    instrumentation (``start_tracing(celery=False)``); None elsewhere (no tracing, or the
    instrumentation makes them from the publish signals the publisher fires).

    The same span the instrumentation makes for a publish (name, kind, attributes; tested), and
    its context in the message's headers, where the worker's instrumentation reads it. Made
    here because the instrumentation's signal handlers cost 55 to 85 µs a publish even when
    the request is not sampled (they look the task up through Celery's app proxy, twice), as
    much as the rest of the tracing of a request (bench/README.md)."""
    if not tracing_configured():
        return None
    from opentelemetry import context, trace

    from pkg.task_spans import TaskSpans

    if TaskSpans().is_instrumented_by_opentelemetry:
        return None
    tracer = trace.get_tracer(__name__)
    follows_parent = sampler_follows_parent(trace.get_tracer_provider())
    carry_context = context_carrier()

    def publish_span(
        task_name: str, task_id: str, queue: str, headers: dict[str, Any]
    ) -> AbstractContextManager[object]:
        current = context.get_current()  # looked up once, not by each step below
        request = trace.get_current_span(current).get_span_context()
        if follows_parent and request.is_valid and not request.trace_flags.sampled:
            # The sampler would drop this span as it dropped the request's: make none, and
            # carry the request's context (not sampled), which the worker's sampler follows.
            carry_context(headers, request, current)
            return NO_SPAN
        attributes = {
            "celery.action": "apply_async",
            "celery.task_name": task_name,
            "messaging.message.id": task_id,
            "messaging.destination": queue,
            "messaging.destination_kind": "queue",
        }
        kind = trace.SpanKind.PRODUCER
        span = tracer.start_span(f"apply_async/{task_name}", kind=kind, attributes=attributes)
        carry_context(headers, span.get_span_context(), trace.set_span_in_context(span, current))
        return trace.use_span(span, end_on_exit=True)

    return publish_span
