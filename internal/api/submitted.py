"""Which task ids this API issued, with their public name and submission time.

Celery reports any unknown id as PENDING forever; the API answers 404 for ids it never issued
instead, and never revokes or reports on tasks it did not create.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from pydantic_core import to_json

from internal.infra.redis import SUBMITTED_TASK_KEY
from pkg.async_publisher import Once

KEY = SUBMITTED_TASK_KEY
IDEMPOTENCY_KEY = "app:api:idempotency:{}"
# Until the task stores a state: a week (a backlog older than that is an outage). From then on
# the record expires with the task's result (the result backend's result_companion_key), so a
# task that ran late is never answered "never submitted" while its result is still there.
TTL_SECONDS = 7 * 24 * 3600
TTL = str(TTL_SECONDS)


@dataclass(frozen=True)
class SubmittedTask:
    task_name: str
    submitted_at: dt.datetime
    replay_of: str | None = None  # the dead letter this task replays


def record_command(
    task_id: str, task_name: str, replay_of: str | None = None
) -> tuple[str | bytes, ...]:
    """The Redis command that records a task id, to send along with its message."""
    payload: dict[str, object] = {"task_name": task_name, "submitted_at": dt.datetime.now(dt.UTC)}
    if replay_of is not None:
        payload["replay_of"] = replay_of
    return ("SET", KEY.format(task_id), to_json(payload), "EX", TTL)


def parse(raw: bytes | str | None) -> SubmittedTask | None:
    if raw is None:
        return None
    data = json.loads(raw)
    submitted_at = dt.datetime.fromisoformat(data["submitted_at"])
    return SubmittedTask(data["task_name"], submitted_at, data.get("replay_of"))


class KeyReused(ValueError):
    """An Idempotency-Key sent again with another task or body: a client bug, not a retry."""


def once(
    idempotency_key: str, task_id: str, task_name: str, kwargs_json: str, seconds: int
) -> Once:
    """What the publisher stores under an Idempotency-Key: this task's id, and a digest of
    what was asked (so a reuse for something else is told apart from a retry)."""
    digest = hashlib.sha256(f"{task_name}\n{kwargs_json}".encode()).hexdigest()[:32]
    key = IDEMPOTENCY_KEY.format(hashlib.sha256(idempotency_key.encode()).hexdigest())
    return Once(key, seconds, f"{task_id} {digest}")


def first_task_id(stored: str, asked: Once | None) -> str:
    """The task id stored under the key; KeyReused if it was stored for another request."""
    first_id, _, digest = stored.partition(" ")
    if asked is not None and digest != asked.value.partition(" ")[2]:
        raise KeyReused(
            "this Idempotency-Key was used before for another task or body; use a new key"
        )
    return first_id
