"""Which task ids this API issued, with their public name and submission time.

Celery reports any unknown id as PENDING forever; the API answers 404 for ids it never issued
instead, and never revokes or reports on tasks it did not create.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from pydantic_core import to_json

KEY = "app:api:task:{}"
TTL_SECONDS = 24 * 3600  # as long as Celery keeps results (result_expires)
TTL = str(TTL_SECONDS)


@dataclass(frozen=True)
class SubmittedTask:
    task_name: str
    submitted_at: dt.datetime


def record_command(task_id: str, task_name: str) -> tuple[str | bytes, ...]:
    """The Redis command that records a task id, to send along with its message."""
    payload = {"task_name": task_name, "submitted_at": dt.datetime.now(dt.UTC)}
    return ("SET", KEY.format(task_id), to_json(payload), "EX", TTL)


def parse(raw: bytes | str | None) -> SubmittedTask | None:
    if raw is None:
        return None
    data = json.loads(raw)
    return SubmittedTask(data["task_name"], dt.datetime.fromisoformat(data["submitted_at"]))
