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


class Revoked(BaseModel):
    task_id: str
    revoked: Literal[True] = True
    terminate: bool


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="Each check: 'ok' or why it failed")
