"""The API's Prometheus metrics: requests by route template and status, their latency, and
submissions that failed to reach the broker. Served on a port of their own
(``API_METRICS_PORT``, not published by compose), so nothing outside the stack's network
reads them, whatever the API's own exposure."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PUBLISH_FAILURES = Counter(
    "api_publish_failures_total", "Submissions answered 503: the broker failed or was late"
)


class RequestMetrics:
    """ASGI middleware. Routes are counted by template (``/api/v1/tasks/{task_id}``), never by
    raw path, so ids do not make new series; requests no route matched count as
    ``unmatched``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Each series' children, kept: prometheus_client's labels() checks and locks on every
        # call (2.5 µs a request in a micro-benchmark). Bounded as the series are: by method,
        # route template and status.
        self.series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            key = (scope["method"], getattr(scope.get("route"), "path", "unmatched"), status)
            series = self.series.get(key)
            if series is None:
                method, template, _ = key
                series = (
                    REQUESTS.labels(method, template, str(status)),
                    LATENCY.labels(method, template),
                )
                self.series[key] = series
            requests, latency = series
            requests.inc()
            latency.observe(time.perf_counter() - started)
