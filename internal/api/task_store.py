"""What the API reads and writes for a task, on the event loop (asyncio Redis clients):
submitting it (record + message in one round trip), reading its record and stored state in one
round trip, and waiting for its state to become final (Redis pub/sub, no polling).

One ``TaskStore`` per app, handed to the endpoints as a FastAPI dependency
(``internal/api/dependencies.py``): its settings, Celery client, Redis clients, publisher and
waiter are its own, so a test builds an app on any Redis and overrides what it needs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import anyio
import redis.asyncio as aioredis
from pydantic import BaseModel

from internal.api import submitted
from internal.config.setting import Settings
from internal.infra.redis import new_async_redis
from pkg.async_publisher import AsyncTaskPublisher, Guard
from pkg.celery_task import READY_STATES, CeleryClient, TaskStatus
from pkg.channel_waiter import ChannelWaiter
from pkg.task_catalog import Declaration
from pkg.tracing import publish_tracing


class TaskStore:
    def __init__(self, settings: Settings, client: CeleryClient) -> None:
        self.settings = settings
        self.client = client
        self._redis: dict[str, aioredis.Redis] = {}

    def redis(self, url: str) -> aioredis.Redis:
        """One asyncio client per URL (broker, result backend and the API's own keys; one
        client when they are the same Redis), its pool bounded by API_REDIS_CONNECTIONS.
        Created on first use, on the event loop that serves requests."""
        if url not in self._redis:
            self._redis[url] = new_async_redis(
                url, self.settings.api_redis_connections, self.settings
            )
        return self._redis[url]

    @cached_property
    def publisher(self) -> AsyncTaskPublisher:
        return AsyncTaskPublisher(
            self.client.app,
            self.redis(self.settings.broker_url),
            timeout=self.settings.api_broker_timeout_seconds,
            tracing=publish_tracing(),
        )

    @cached_property
    def waiter(self) -> ChannelWaiter:
        """Every long-poll of this app waits on one pub/sub connection of its own, so waiting
        clients never take the connections that submissions and reads need."""
        backend = self.client.app.backend
        return ChannelWaiter(
            new_async_redis(self.settings.result_backend, 1, self.settings),
            max_waiters=self.settings.api_max_waiters,
            is_final=lambda data: backend.decode_result(data).get("status") in READY_STATES,
        )

    async def aclose(self) -> None:
        """Close its Redis connections (the app's lifespan does, at shutdown)."""
        if "waiter" in self.__dict__:
            await self.waiter.close()
        for client in self._redis.values():
            await client.aclose()
        self._redis.clear()

    async def submit(
        self,
        task_id: str,
        public_name: str,
        task: Declaration,
        body: BaseModel,
        idempotency_key: str | None = None,
    ) -> str:
        """Record the id and publish the task (with one Redis for both, atomically together);
        return the id of the task queued. With an ``idempotency_key`` seen within
        API_IDEMPOTENCY_SECONDS, that is the first task's id, and nothing is queued again."""
        settings = self.settings
        record = submitted.record_command(task_id, public_name)
        once = None
        if idempotency_key is not None:
            once = submitted.once(
                idempotency_key,
                task_id,
                public_name,
                body.model_dump_json(),
                settings.api_idempotency_seconds,
            )
        first = await self.publish_recorded(
            task.name, body.model_dump(), task_id=task_id, record=record, guard=once
        )
        return task_id if first is None else submitted.first_task_id(first, once)

    @property
    def records_with_messages(self) -> bool:
        """Whether the API's records live in the broker's Redis, so a record and its message
        can be written in one atomic step."""
        return self.settings.app_redis_url == self.settings.broker_url

    async def publish_recorded(
        self,
        task_name: str,
        kwargs: dict[str, Any],
        *,
        task_id: str,
        record: Sequence[Any],
        guard: Guard | None = None,
    ) -> str | None:
        """Publish a task together with the API's record of it: in the same atomic step when
        they share a Redis, else the record first (a task is never queued unrecorded)."""
        if not self.records_with_messages:
            await self.redis(self.settings.app_redis_url).execute_command(*record)  # type: ignore[no-untyped-call]
        return await self.publisher.publish(
            task_name,
            kwargs,
            task_id=task_id,
            also=[record] if self.records_with_messages else [],
            guard=guard,
        )

    async def read(self, task_id: str) -> tuple[submitted.SubmittedTask | None, TaskStatus]:
        """The task's record (None: this API never issued it) and its stored state."""
        settings = self.settings
        record_key = submitted.KEY.format(task_id)
        result_key = self.client.result_key(task_id)
        if settings.app_redis_url == settings.result_backend:
            record, stored = await self.redis(settings.result_backend).mget(record_key, result_key)
        else:
            record = await self.redis(settings.app_redis_url).get(record_key)
            stored = await self.redis(settings.result_backend).get(result_key)
        return submitted.parse(record), self.client.status_from_stored(task_id, stored)

    async def read_when_ready(
        self, task_id: str, wait_seconds: float
    ) -> tuple[submitted.SubmittedTask | None, TaskStatus]:
        """``read``, but wait up to ``wait_seconds`` for a final state (SUCCESS, FAILURE,
        REVOKED).

        Celery's Redis backend publishes every state it stores on the key's own channel. The
        subscription is confirmed before the first read, so a state stored in between is not
        missed. Raises ``TooManyWaiters`` past API_MAX_WAITERS."""
        async with self.waiter.watch(self.client.result_key(task_id)) as final:
            entry, status = await self.read(task_id)
            if entry is None or status.ready:
                return entry, status
            with anyio.move_on_after(wait_seconds):
                await asyncio.shield(final)
        return await self.read(task_id)
