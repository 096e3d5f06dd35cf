"""What the API reads and writes for a task, on the event loop (asyncio Redis clients):
submitting it (record + message in one round trip), reading its record and stored state in one
round trip, and waiting for its state to become final (Redis pub/sub, no polling)."""

from __future__ import annotations

import asyncio
from functools import cache

import anyio
from pydantic import BaseModel

from internal.api import submitted
from internal.celery_tasks import default_celery_client
from internal.config.setting import get_settings
from internal.infra.redis import get_async_redis, new_async_redis
from pkg.async_publisher import AsyncTaskPublisher
from pkg.celery_task import READY_STATES, TaskStatus
from pkg.channel_waiter import ChannelWaiter
from pkg.task_catalog import Declaration


@cache
def publisher() -> AsyncTaskPublisher:
    settings = get_settings()
    return AsyncTaskPublisher(
        default_celery_client.app,
        get_async_redis(settings.broker_url),
        timeout=settings.api_broker_timeout_seconds,
    )


async def submit(
    task_id: str,
    public_name: str,
    task: Declaration,
    body: BaseModel,
    idempotency_key: str | None = None,
) -> str:
    """Record the id and publish the task (with one Redis for both, atomically together);
    return the id of the task queued. With an ``idempotency_key`` seen within
    API_IDEMPOTENCY_SECONDS, that is the first task's id, and nothing is queued again."""
    settings = get_settings()
    record = submitted.record_command(task_id, public_name)
    same_redis = settings.app_redis_url == settings.broker_url
    kwargs_json = body.model_dump_json()
    once = None
    if idempotency_key is not None:
        once = submitted.once(idempotency_key, task_id, public_name, kwargs_json)
    if not same_redis:
        await get_async_redis(settings.app_redis_url).execute_command(*record)  # type: ignore[no-untyped-call]
    first = await publisher().publish(
        task.name,
        body.model_dump(),
        task_id=task_id,
        also=[record] if same_redis else [],
        once=once,
    )
    return task_id if first is None else submitted.first_task_id(first, once)


async def read(task_id: str) -> tuple[submitted.SubmittedTask | None, TaskStatus]:
    """The task's record (None: this API never issued it) and its stored state."""
    settings = get_settings()
    record_key = submitted.KEY.format(task_id)
    result_key = default_celery_client.result_key(task_id)
    if settings.app_redis_url == settings.result_backend:
        record, stored = await get_async_redis(settings.result_backend).mget(record_key, result_key)
    else:
        record = await get_async_redis(settings.app_redis_url).get(record_key)
        stored = await get_async_redis(settings.result_backend).get(result_key)
    return submitted.parse(record), default_celery_client.status_from_stored(task_id, stored)


@cache
def waiter() -> ChannelWaiter:
    """Every long-poll of this process waits on one pub/sub connection of its own, so waiting
    clients never take the connections that submissions and reads need."""
    settings = get_settings()
    return ChannelWaiter(
        new_async_redis(settings.result_backend, max_connections=1),
        max_waiters=settings.api_max_waiters,
        is_final=lambda data: (
            default_celery_client.app.backend.decode_result(data).get("status") in READY_STATES
        ),
    )


async def read_when_ready(
    task_id: str, wait_seconds: float
) -> tuple[submitted.SubmittedTask | None, TaskStatus]:
    """``read``, but wait up to ``wait_seconds`` for a final state (SUCCESS, FAILURE, REVOKED).

    Celery's Redis backend publishes every state it stores on the key's own channel. The
    subscription is confirmed before the first read, so a state stored in between is not
    missed. Raises ``TooManyWaiters`` past API_MAX_WAITERS."""
    async with waiter().watch(default_celery_client.result_key(task_id)) as final:
        entry, status = await read(task_id)
        if entry is None or status.ready:
            return entry, status
        with anyio.move_on_after(wait_seconds):
            await asyncio.shield(final)
    return await read(task_id)
