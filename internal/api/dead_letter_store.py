"""What the API reads and writes for dead letters (tasks that failed for good, kept by the
workers: pkg/dead_letters.py): a page of them newest first, one in full, discarding one, and
replaying one as a new task whose message is pushed in the same step as the entry is taken."""

from __future__ import annotations

import uuid
from typing import Any

from internal.api import submitted
from internal.api.task_store import TaskStore
from pkg.dead_letters import DeadLetters, parse
from pkg.task_catalog import TaskCatalog


class CannotReplay(ValueError):
    """A dead letter this API cannot send again as it was (a reason for a 409)."""


class DeadLetterStore:
    def __init__(self, tasks: TaskStore, letters: DeadLetters, catalog: TaskCatalog) -> None:
        self.tasks = tasks
        self.letters = letters
        self.declared = {d.name: d for d in catalog.declarations}
        self.public_names = {d.name: name for name, d in catalog.public().items()}

    @property
    def _redis(self) -> Any:
        return self.tasks.redis(self.tasks.settings.app_redis_url)

    async def page(self, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """How many are held, and ``limit`` of them from ``offset``, newest first."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.letters.index)
            pipe.zrevrange(self.letters.index, offset, offset + limit - 1)
            total, ids = await pipe.execute()
        if not ids:
            return total, []
        raw = await self._redis.hmget(self.letters.entries, ids)
        return total, [entry for entry in map(parse, raw) if entry is not None]

    async def get(self, letter_id: str) -> dict[str, Any] | None:
        return parse(await self._redis.hget(self.letters.entries, letter_id))

    async def discard(self, letter_id: str) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.letters.entries, letter_id)
            pipe.zrem(self.letters.index, letter_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def replay(self, letter_id: str) -> tuple[str, str] | None:
        """Queue the task again with a new id, recorded as a replay of ``letter_id``, and take
        the entry out: together in one script when the broker is the app's Redis, else the
        entry goes once the task is queued (a crash in between leaves it, never loses it).
        Returns the new id and the task's public name (its wire name if it has none); None if
        there is no such entry (or a concurrent replay or discard took it first)."""
        letter = await self.get(letter_id)
        if letter is None:
            return None
        name = letter["task_name"]
        kwargs = self._as_keywords(name, letter["args"], letter["kwargs"])
        new_id = str(uuid.uuid4())
        public_name = self.public_names.get(name, name)
        record = submitted.record_command(new_id, public_name, replay_of=letter_id)
        if self.tasks.records_with_messages:  # dead letters live with the records
            taken = await self.tasks.publish_recorded(
                name,
                kwargs,
                task_id=new_id,
                record=record,
                guard=self.letters.take_for_replay(letter_id),
            )
            return (new_id, public_name) if taken == "1" else None
        await self.tasks.publish_recorded(name, kwargs, task_id=new_id, record=record)
        await self.discard(letter_id)
        return new_id, public_name

    def _as_keywords(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The publisher sends keyword arguments: positional ones are named through the task's
        declared signature."""
        if not args:
            return kwargs
        declaration = self.declared.get(name)
        if declaration is None:
            raise CannotReplay(
                f"{name} was sent with positional arguments and is not declared here, so they "
                "cannot be named; replay it with CeleryClient.submit"
            )
        try:
            return dict(declaration.signature.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            raise CannotReplay(f"{name}: its arguments do not fit its signature ({exc})") from None
