"""The tasks HTTP callers may submit, each with the pydantic model that validates its body.

Only what is listed in ``PUBLIC_TASKS`` can be run through the API; Celery's own tasks and any
other registered task answer 404. This module imports no task code, so the API process does not
load the worker's modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from internal.tasks.celery import queues


class TaskBody(BaseModel):
    # Unknown fields are an error, not silently dropped: a typo must not run a task with defaults.
    model_config = ConfigDict(extra="forbid", strict=True)


class AddBody(TaskBody):
    x: int = Field(ge=-(10**12), le=10**12, description="First addend")
    y: int = Field(ge=-(10**12), le=10**12, description="Second addend")


class LongReportBody(TaskBody):
    steps: int = Field(default=10, ge=1, le=1000, description="How many steps to run")
    step_seconds: float = Field(default=0.5, ge=0, le=60, description="Seconds per step")


class FlakyFetchBody(TaskBody):
    fail_times: int = Field(
        default=2, ge=0, le=10, description="Transient failures before it succeeds"
    )


class RecordOrderBody(TaskBody):
    order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    work_seconds: float = Field(default=0.0, ge=0, le=60, description="Simulated work")


@dataclass(frozen=True)
class PublicTask:
    celery_name: str
    body: type[TaskBody]
    summary: str


PUBLIC_TASKS: dict[str, PublicTask] = {
    "add": PublicTask(queues.ADD, AddBody, "Add two integers (a quick task)."),
    "long_report": PublicTask(
        queues.LONG_REPORT,
        LongReportBody,
        "A long task on the `slow` queue that reports its progress.",
    ),
    "flaky_fetch": PublicTask(
        queues.FLAKY_FETCH,
        FlakyFetchBody,
        "Fails transiently `fail_times` times, retried with exponential backoff.",
    ),
    "record_order": PublicTask(
        queues.RECORD_ORDER,
        RecordOrderBody,
        "Records an order idempotently (keyed by `order_id`): safe to run twice.",
    ),
}
