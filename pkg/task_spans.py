"""The Celery instrumentation, without the span a parent-based sampler would drop.

A task published from a trace the sampler dropped (99 of 100 at 1% sampling) gets the same
treatment as such a request in the API (``pkg.trace_requests``): the task runs in the
publisher's context, which it carries, and no span of its own is built. Its log lines keep the
publisher's ``trace_id``, and what it publishes carries the same unsampled context on.
Everything else (a sampled parent, no parent, any sampler that is not parent-based, publish
spans) is the instrumentation's own code, unchanged.

Why: with traces at 1%, the pool's processes spent about 175 µs more per ``add`` task than with
them off (bench/README.md, row 6), in the instrumentation's prerun and postrun handlers and the
SDK building and ending a span that is then dropped.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from opentelemetry import context, trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor, celery_getter
from opentelemetry.propagate import extract

from pkg.tracing import sampler_follows_parent


class TaskSpans(CeleryInstrumentor):
    _instance = None  # BaseInstrumentor keeps one instance per class: ours, not the parent's

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def _instrument(self, **kwargs: Any) -> None:
        provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        self._children_follow = sampler_follows_parent(provider)
        self._dropped: dict[str, Token[context.Context]] = {}  # task id -> its attach token
        super()._instrument(**kwargs)  # type: ignore[no-untyped-call]

    def _trace_prerun(self, *args: Any, **kwargs: Any) -> None:
        task, task_id = kwargs.get("task"), kwargs.get("task_id")
        if self._children_follow and task is not None and task_id is not None:
            carried = extract(task.request, getter=celery_getter)
            parent = trace.get_current_span(carried).get_span_context()
            if parent.is_valid and not parent.trace_flags.sampled:
                self._dropped[task_id] = context.attach(carried)
                return
        super()._trace_prerun(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _trace_postrun(self, *args: Any, **kwargs: Any) -> None:
        token = self._dropped.pop(kwargs.get("task_id") or "", None)
        if token is not None:
            context.detach(token)
            return
        super()._trace_postrun(*args, **kwargs)  # type: ignore[no-untyped-call]
