"""Which task ids this API issued, with their public name and submission time.

Celery reports any unknown id as PENDING forever; the API answers 404 for ids it never issued
instead, and never revokes or reports on tasks it did not create.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from internal.infra.redis import get_redis

KEY = "app:api:task:{}"
TTL_SECONDS = 24 * 3600  # as long as Celery keeps results (result_expires)


@dataclass(frozen=True)
class SubmittedTask:
    task_name: str
    submitted_at: dt.datetime


def record(task_id: str, task_name: str) -> SubmittedTask:
    entry = SubmittedTask(task_name, dt.datetime.now(dt.UTC))
    payload = {"task_name": task_name, "submitted_at": entry.submitted_at.isoformat()}
    get_redis().set(KEY.format(task_id), json.dumps(payload), ex=TTL_SECONDS)
    return entry


def forget(task_id: str) -> None:
    get_redis().delete(KEY.format(task_id))


def lookup(task_id: str) -> SubmittedTask | None:
    raw = get_redis().get(KEY.format(task_id))
    if raw is None:
        return None
    data = json.loads(str(raw))
    return SubmittedTask(data["task_name"], dt.datetime.fromisoformat(data["submitted_at"]))
