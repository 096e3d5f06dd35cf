"""What the API reads and writes for a task, on the event loop (asyncio Redis clients):
submitting it (record + message in one round trip), reading its record and stored state in one
round trip, and waiting for its state to become final (Redis pub/sub, no polling)."""

from __future__ import annotations

from functools import cache

import anyio

from internal.api import submitted
from internal.celery_tasks import default_celery_client
from internal.config.setting import get_settings
from internal.infra.redis import get_async_redis
from internal.tasks.celery.schemas import PublicTask, TaskBody
from pkg.async_publisher import AsyncTaskPublisher
from pkg.celery_task import READY_STATES, TaskStatus


@cache
def publisher() -> AsyncTaskPublisher:
    settings = get_settings()
    return AsyncTaskPublisher(
        default_celery_client.app,
        get_async_redis(settings.broker_url),
        timeout=settings.api_broker_timeout_seconds,
    )


async def submit(task_id: str, public_name: str, task: PublicTask, body: TaskBody) -> None:
    """Record the id and publish the task; with one Redis for both, atomically together."""
    settings = get_settings()
    record = submitted.record_command(task_id, public_name)
    same_redis = settings.app_redis_url == settings.broker_url
    if not same_redis:
        await get_async_redis(settings.app_redis_url).execute_command(*record)  # type: ignore[no-untyped-call]
    await publisher().publish(
        task.celery_name,
        body.model_dump(),
        task_id=task_id,
        kwargs_json=body.model_dump_json(),
        also=[record] if same_redis else [],
    )


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


async def read_when_ready(
    task_id: str, wait_seconds: float
) -> tuple[submitted.SubmittedTask | None, TaskStatus]:
    """``read``, but wait up to ``wait_seconds`` for a final state (SUCCESS, FAILURE, REVOKED).

    Celery's Redis backend publishes every state it stores on the key's own channel. The
    subscription starts before the first read, so a state stored in between is not missed."""
    channel = default_celery_client.result_key(task_id)
    pubsub = get_async_redis(get_settings().result_backend).pubsub()
    try:
        await pubsub.subscribe(channel)
        entry, status = await read(task_id)
        if entry is None or status.ready:
            return entry, status
        with anyio.move_on_after(wait_seconds):
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                state = default_celery_client.app.backend.decode_result(message["data"])
                if state.get("status") in READY_STATES:
                    break
        return await read(task_id)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
