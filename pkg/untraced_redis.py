"""Redis clients for the task plumbing (the broker transport, leases, the result backend)
whose commands get a span only inside a span that is recorded: a sampled task's run or
publish. They never start a trace of their own, and cost nothing under a span the sampler
dropped.

Why: with the Redis instrumentation on, an idle worker started about ten traces a second of
one Redis span each (lease renewals, polls, heartbeats; counted on a real worker), and under a
task the sampler dropped, the instrumentation still formats every command's arguments (the
stored result among them) before it looks at sampling. OpenTelemetry's Ruby instrumentation
has this as an option (``trace_root_spans: false``); Python's has none, so these subclasses
run their commands with instrumentation suppressed unless the current span is recorded.
Suppression is scoped to these clients' own commands: a task's own Redis and HTTP calls are
traced (and propagate their context) exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from redis.client import Pipeline

from pkg.tracing import tracing_configured


@contextmanager
def traced_only_if_recorded() -> Iterator[None]:
    if trace.get_current_span().is_recording():
        yield
        return
    token = context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        context.detach(token)


class UntracedPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with traced_only_if_recorded():
            return super().execute(raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        with traced_only_if_recorded():
            return super().immediate_execute_command(*args, **options)  # type: ignore[no-untyped-call]


class UntracedRedis(redis.Redis):
    def execute_command(self, *args: Any, **options: Any) -> Any:
        with traced_only_if_recorded():
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> UntracedPipeline:
        return UntracedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


def plumbing_redis_class() -> type[redis.Redis]:
    """The client class for the plumbing's Redis: plain ``redis.Redis`` without tracing."""
    return UntracedRedis if tracing_configured() else redis.Redis
