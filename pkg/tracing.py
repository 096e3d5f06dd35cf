"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

Set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and every
process exports its spans there over OTLP/HTTP; the other standard ``OTEL_*`` variables
(``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...) apply as
the SDK reads them. Celery and Redis are instrumented by the OpenTelemetry instrumentations,
the API by FastAPI's own telemetry (``api_telemetry``). A publish carries its trace context in
the message's top-level headers (``traceparent``), where the Celery instrumentation of the
worker reads it: Celery's own publish puts it there, and so does the API's publisher (it fires
``before_task_publish`` before it serializes the headers). So one trace runs from the HTTP
request through the publish into the worker's run of the task.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_configured() -> bool:
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return not disabled and any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def start_tracing(service: str) -> bool:
    """Export this process's spans (named ``service`` unless OTEL_SERVICE_NAME says
    otherwise) and instrument Celery and Redis; nothing, and False, without an endpoint."""
    if not tracing_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    # The batch processor restarts its export thread in forked children (prefork pool).
    provider = TracerProvider(resource=Resource.create(named))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    RedisInstrumentor().instrument(tracer_provider=provider)
    return True


def api_telemetry(probe_paths: frozenset[str]) -> TelemetryConfig:
    """FastAPI's own OpenTelemetry settings (``FastAPI(telemetry=...)``): one server span per
    request, named by its route, whenever ``start_tracing`` installed a tracer provider;
    nothing otherwise. Not for the paths in ``probe_paths`` (health checks)."""

    def is_probe(scope: Any) -> bool:
        return scope.get("path") in probe_paths

    # FastAPI traces natively since 0.142: it names the span after routing, where the
    # contrib middleware matched every route a second time per request (a fifth of the API's
    # CPU with traces on, bench/). Its own request metrics are off (the API's are
    # Prometheus's), and so are its spans per dependency, endpoint and serialization: three
    # more spans a request that say little the request's span does not.
    return {"metrics": False, "logs": False, "operation_spans": False, "exclude": is_probe}
