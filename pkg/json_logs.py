"""One JSON object per log line (LOG_FORMAT=json), for log collectors.

Every line has ``time`` (ISO 8601, UTC), ``level``, ``service``, ``logger`` and ``message``;
where they apply, ``task_id`` and ``task_name`` (a line logged while a Celery task runs, or
about one), ``request_id`` (while the API serves a request) and ``trace_id`` (an active
OpenTelemetry span), so one search follows a request into its task; ``exc_info`` holds a
traceback. The formatting is python-json-logger's; what is ours is which fields, and where
they come from.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

# The request an API line belongs to (set by the API's request-id middleware).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

FIELDS = ("levelname", "name", "message")
RENAMED = {"levelname": "level", "name": "logger"}


class ContextFields(logging.Filter):
    """Adds the task, request and trace a line belongs to, when there is one."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = _current_task()
        if task is not None and not hasattr(record, "task_id"):
            record.task_id = task.request.id
            record.task_name = task.name
        rid = request_id.get()
        if rid is not None:
            record.request_id = rid
        trace_id = _current_trace_id()
        if trace_id is not None:
            record.trace_id = trace_id
        # Celery's own lines about a task ("Task tasks.add[<id>] received", "succeeded") carry
        # it as the message's data, and again as an extra ``data`` field, with the arguments'
        # repr: keep the id and name, drop the rest (arguments may be personal data).
        data = record.args if isinstance(record.args, dict) else None
        if data and "id" in data and "name" in data and not hasattr(record, "task_id"):
            record.task_id, record.task_name = data["id"], data["name"]
        if isinstance(record.__dict__.get("data"), dict):
            del record.__dict__["data"]
        return True


def _current_task() -> Any:
    from celery import current_task

    task = current_task._get_current_object() if current_task else None
    return task if task is not None and task.request.id else None


def _current_trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:  # tracing is optional
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def json_formatter(service: str) -> JsonFormatter:
    return JsonFormatter(
        list(FIELDS),
        rename_fields=RENAMED,
        static_fields={"service": service},
        timestamp="time",
    )


def json_handler(service: str) -> logging.StreamHandler[Any]:
    """A stdout handler writing ``service``'s lines as JSON, with their context fields."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(json_formatter(service))
    handler.addFilter(ContextFields())
    return handler


def use_json_logs(service: str, level: int | str = logging.INFO) -> None:
    """Route every logger of this process to one JSON handler on stdout (what had its own
    handlers, like tornado's or uvicorn's, now propagates to it), and Python warnings too."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler(service))
    root.setLevel(level)
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and logger.handlers:
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
    logging.captureWarnings(True)
