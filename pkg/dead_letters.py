"""Dead letters: tasks that failed for good, kept in Redis so they can be read and replayed.

Celery fires ``task_failure`` once a task will not run again: its retries are exhausted, it hit
its hard time limit, its worker was lost more often than ``max_retries`` allows (the poison-pill
cap), it rejected its message, or its arguments were refused. ``DeadLetters.keep(app, redis)``
records each such task: name, arguments, error, traceback, attempts, when, the original id.
A retry is not a failure (Celery fires ``task_retry`` for it), so nothing is kept until the
last attempt fails.

The store is bounded: past ``max_entries`` the oldest go first. Two keys: a sorted set of ids by
failure time (newest-first pages, the count) and a hash of id -> JSON entry. Taking an entry out
to replay it is one script that also pushes the new message (``TakeForReplay``), so an entry
disappears exactly when its replay is queued: never lost, never replayed twice.

Celery has no dead-letter store for Redis (celery #4797: only RabbitMQ's dead-letter exchanges),
hence this module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import traceback as tb
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from celery import Celery, signals
from kombu.utils.json import dumps as _untyped_dumps

from pkg.async_publisher import script_command

log = logging.getLogger(__name__)
kombu_dumps: Any = _untyped_dumps  # arguments keep kombu's type tags (datetimes, UUIDs, ...)

# A traceback longer than this keeps its end (where the error is).
MAX_TRACEBACK_CHARS = 16_000

# KEYS: index, entries. ARGV: id, score (ms), entry, max entries. Returns how many were dropped.
ADD_LUA = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if excess <= 0 then return 0 end
local oldest = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
for _, id in ipairs(oldest) do redis.call('HDEL', KEYS[2], id) end
return excess
"""

# KEYS: entries, index, queue. ARGV: id, message, then the caller's writes. Takes the entry out
# and pushes its replay together; 0 (nothing pushed) if the entry is gone.
TAKE_LUA = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
{also}
redis.call('LPUSH', KEYS[3], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class DeadLetter:
    id: str
    task_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    error: str
    traceback: str
    attempts: int
    failed_at: str
    queue: str | None
    worker: str

    def to_json(self) -> str:
        return str(kombu_dumps(asdict(self)))


class DeadLetters:
    def __init__(self, prefix: str = "app:dead-letters", max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.index = prefix  # sorted set: id -> failure time in ms
        self.entries = f"{prefix}:entries"  # hash: id -> JSON entry
        self.max_entries = max_entries

    def add(self, client: redis.Redis, letter: DeadLetter) -> int:
        """Keep ``letter`` (replacing one with the same id); returns how many old ones went."""
        score = int(dt.datetime.fromisoformat(letter.failed_at).timestamp() * 1000)
        keys_and_args = (self.index, self.entries, letter.id, score, letter.to_json())
        dropped: int = client.eval(ADD_LUA, 2, *keys_and_args, self.max_entries)
        return dropped

    def take_for_replay(self, letter_id: str) -> TakeForReplay:
        return TakeForReplay(self, letter_id)

    def keep(self, app: Celery, client: Callable[[], redis.Redis]) -> None:
        """Record every task of ``app`` that fails for good, with ``client()`` (a Redis client
        of the process the failure is seen in: a pool process or the worker's main one)."""

        def on_failure(
            sender: Any = None,
            task_id: str | None = None,
            exception: BaseException | None = None,
            args: Sequence[Any] | None = None,
            kwargs: dict[str, Any] | None = None,
            einfo: Any = None,
            **_: Any,
        ) -> None:
            if sender is None or getattr(sender, "app", None) is not app or task_id is None:
                return
            letter = dead_letter(sender, task_id, exception, args, kwargs, einfo)
            try:
                self.add(client(), letter)
            except redis.RedisError as exc:  # the result is stored; only the copy is lost
                log.error("dead letter for %s not kept: %s", task_id, exc)

        signals.task_failure.connect(on_failure, weak=False)


def dead_letter(
    task: Any,
    task_id: str,
    exception: BaseException | None,
    args: Sequence[Any] | None,
    kwargs: dict[str, Any] | None,
    einfo: Any,
) -> DeadLetter:
    """What ``task_failure`` says about a task, as a dead letter. The task's request is there
    for failures seen where the task ran; a hard time limit or a lost worker is seen by the
    worker's main process, where only the message's own fields are known."""
    request = getattr(task, "request", None)
    retries = getattr(request, "retries", None) or 0
    delivery = getattr(request, "delivery_info", None) or {}
    trace = getattr(einfo, "traceback", None) or "".join(
        tb.format_exception(exception) if exception is not None else []
    )
    return DeadLetter(
        id=task_id,
        task_name=task.name,
        args=list(args or ()),
        kwargs=dict(kwargs or {}),
        error=f"{type(exception).__name__}: {exception}" if exception else "unknown error",
        traceback=trace[-MAX_TRACEBACK_CHARS:],
        attempts=retries + 1,
        failed_at=dt.datetime.now(dt.UTC).isoformat(),
        queue=delivery.get("routing_key"),
        worker=getattr(request, "hostname", None) or socket.gethostname(),
    )


def parse(raw: bytes | str | None) -> dict[str, Any] | None:
    return None if raw is None else dict(json.loads(raw))


@dataclass(frozen=True)
class TakeForReplay:
    """A publish guard (``AsyncTaskPublisher.publish(guard=...)``): takes the entry out and
    pushes the replay in one script. The publish returns "1", or "0" if the entry was gone
    (taken by a concurrent replay or a discard: then nothing was pushed)."""

    store: DeadLetters
    letter_id: str

    def command(self, also: Sequence[Sequence[Any]], queue: str, payload: bytes) -> tuple[Any, ...]:
        keys = (self.store.entries, self.store.index, queue)
        return script_command(TAKE_LUA, keys, (self.letter_id, payload), also)
