"""The app's own Redis keys, and its Redis clients outside Celery.

``get_redis``: one blocking client per process for the app's keys (beat's heartbeat, the
orders the example tasks record). ``new_async_redis``: an asyncio client with a bounded pool
(the API's task store makes its own: broker, result backend, its task records).

Clients hold sockets, which must not cross ``fork``: worker processes reset theirs at start
(see ``internal.celery_tasks``), and everything else creates it lazily on first use.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from internal.config.setting import Settings, get_settings
from pkg.redis_sentinel import async_client, sync_client

_client: redis.Redis | None = None

# When beat last sent its heartbeat task (beat's healthcheck: beat alone decides it), and when a
# worker last ran one (the schedule reaches the workers).
HEARTBEAT_KEY = "app:beat:heartbeat"
HEARTBEAT_RAN_KEY = "app:beat:heartbeat:ran"
# The API's record of a task it issued (internal/api/submitted.py).
SUBMITTED_TASK_KEY = "app:api:task:{}"
# Tasks that failed for good (pkg/dead_letters.py): a sorted set, and its ":entries" hash.
DEAD_LETTERS_KEY = "app:dead-letters"
ORDERS_KEY = "app:orders"
ORDER_ATTEMPTS_KEY = "app:orders:attempts"


def get_redis() -> redis.Redis:
    global _client
    if _client is None:
        settings = get_settings()
        _client = sync_client(
            settings.app_redis_url,
            settings.sentinel_kwargs(),
            socket_connect_timeout=settings.readiness_timeout_seconds,
            socket_timeout=settings.api_broker_timeout_seconds,
            health_check_interval=30,
            decode_responses=True,
            **settings.redis_tls(settings.app_redis_url),
        )
    return _client


def reset_redis() -> None:
    """Drop this process's client (after fork, or at shutdown)."""
    global _client
    if _client is not None:
        _client.close()
    _client = None


def new_async_redis(url: str, max_connections: int, settings: Settings) -> aioredis.Redis:
    """An asyncio client whose pool holds at most ``max_connections``: a caller that finds
    them all busy waits for one (up to API_BROKER_TIMEOUT_SECONDS) instead of failing."""
    return async_client(
        url,
        settings.sentinel_kwargs(),
        max_connections=max_connections,
        timeout=settings.api_broker_timeout_seconds,
        socket_connect_timeout=settings.readiness_timeout_seconds,
        socket_timeout=settings.api_broker_timeout_seconds,
        health_check_interval=30,
        **settings.redis_tls(url),
    )
