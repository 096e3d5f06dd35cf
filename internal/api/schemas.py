"""Response models of the API (request bodies are the tasks' own models)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field


class Submitted(BaseModel):
    task_id: str
    task_name: str
    status_url: str = Field(description="GET this URL for the task's state and result")


class TaskState(BaseModel):
    task_id: str
    task_name: str
    state: str = Field(description="PENDING, STARTED, PROGRESS, RETRY, SUCCESS, FAILURE, REVOKED")
    ready: bool = Field(description="True once the task will not change again")
    result: Any = None
    error: str | None = None
    progress: dict[str, Any] | None = Field(
        default=None, description="Latest progress meta, e.g. {current, total, percent}"
    )
    submitted_at: dt.datetime
    date_done: dt.datetime | None = None
    replay_of: str | None = Field(
        default=None, description="The dead letter (original task id) this task replays"
    )


class Replayed(Submitted):
    replay_of: str = Field(description="The original task id, whose dead letter was taken out")


class DeadLetterSummary(BaseModel):
    id: str = Field(description="The original task's id")
    task_name: str
    error: str
    attempts: int
    failed_at: dt.datetime
    queue: str | None


# The ignore: mypy's pydantic plugin gives __init__ a **kwargs of its own, which a field
# named kwargs (Celery's name, kept on the wire) then redefines.
class DeadLetter(DeadLetterSummary):  # type: ignore[no-redef]
    args: list[Any]
    kwargs: dict[str, Any]
    traceback: str
    worker: str


class DeadLetterPage(BaseModel):
    total: int = Field(description="Dead letters held")
    offset: int
    limit: int
    items: list[DeadLetterSummary] = Field(description="Newest first")


class Revoked(BaseModel):
    task_id: str
    revoked: Literal[True] = True
    terminate: bool


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="Each check: 'ok' or why it failed")
