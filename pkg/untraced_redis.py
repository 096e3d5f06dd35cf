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

from collections.abc import Callable
from typing import Any

import redis
from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from redis.client import Pipeline

from pkg.tracing import tracing_configured


def traced_only_if_recorded(command: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """``command(*args, **options)``, with instrumentation suppressed unless the current span
    is recorded. A plain function, not a context manager: it runs for every command."""
    if trace.get_current_span().is_recording():
        return command(*args, **options)
    token = context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        return command(*args, **options)
    finally:
        context.detach(token)


class UntracedPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return traced_only_if_recorded(super().execute, raise_on_error)  # type: ignore[no-any-return]

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        return traced_only_if_recorded(super().immediate_execute_command, *args, **options)


class UntracedRedis(redis.Redis):
    def execute_command(self, *args: Any, **options: Any) -> Any:
        return traced_only_if_recorded(super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> UntracedPipeline:
        return UntracedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


def plumbing_redis_class() -> type[redis.Redis]:
    """The client class for the plumbing's Redis: plain ``redis.Redis`` without tracing."""
    return UntracedRedis if tracing_configured() else redis.Redis
