"""ASGI middleware: an OpenTelemetry server span per HTTP request, the caller's trace context
(``traceparent``) continued, the span named by the route template once routing has run
(``POST /api/v1/tasks/{name}``), with the HTTP semantic-convention attributes.

Hand-written because it is what the tracing of a request costs: FastAPI's own telemetry
(and the contrib ASGI middleware before it) spends about a tenth of this API's CPU per request
on a request that is not sampled (span attributes, URL parsing, three context switches), which
with 1% sampling was most of the cost of tracing (bench/README.md). Here a request the sampler
drops costs the context it carries and nothing else; a sampled one gets the same span.
"""

from __future__ import annotations

from opentelemetry import context, propagate, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pkg.tracing import sampler_follows_parent

NEW_TRACE = context.Context()


class TraceRequests:
    def __init__(
        self,
        app: ASGIApp,
        *,
        skip_paths: frozenset[str] = frozenset(),
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        """``skip_paths``: paths with no span (health checks). ``tracer_provider``: the
        global one unless given."""
        self.app = app
        self.skip_paths = skip_paths
        self.tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        provider = tracer_provider or trace.get_tracer_provider()
        self.children_follow = sampler_follows_parent(provider)
        # The headers the configured propagators read (traceparent, tracestate, baggage).
        self.carried = frozenset(f.encode() for f in propagate.get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.skip_paths:
            await self.app(scope, receive, send)
            return
        given = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in self.carried}
        # Without a caller's context the request starts a trace: said explicitly, the SDK need
        # not look the current context up three times.
        parent = propagate.extract(given) if given else NEW_TRACE
        method = scope["method"]
        span = self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        if not span.is_recording():  # not sampled: carry the context, nothing more
            carried = trace.set_span_in_context(span, parent)
            if self.children_follow:
                # Its child spans would be dropped too: the instrumentations skip them rather
                # than build what is then thrown away (the Redis one formats every command of a
                # pipeline before it looks at sampling).
                carried = context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True, carried)
            token = context.attach(carried)
            try:
                await self.app(scope, receive, send)
            finally:
                context.detach(token)
            return
        token = context.attach(trace.set_span_in_context(span, parent))
        status: int | None = None

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attributes(
                {
                    "http.request.method": method,
                    "url.path": scope["path"],
                    "url.scheme": scope.get("scheme", "http"),
                    "network.protocol.version": scope.get("http_version", "1.1"),
                }
            )
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if status is None or status >= 500:
                span.set_status(StatusCode.ERROR)
            span.end()
            context.detach(token)
