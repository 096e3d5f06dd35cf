"""Broker calls from the API with a deadline, failures turned into 503: async calls on the event
loop (``on_broker``), blocking ones in a worker thread (``off_loop``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import redis
from fastapi import HTTPException, status
from kombu.exceptions import OperationalError

T = TypeVar("T")

BROKER_ERRORS = (OperationalError, redis.RedisError, OSError, TimeoutError)


async def off_loop(fn: Callable[[], T], *, timeout: float, what: str) -> T:
    """``fn()`` in a worker thread (Celery and redis-py block); 503 if it fails or is late."""
    return await on_broker(
        anyio.to_thread.run_sync(fn, abandon_on_cancel=True), timeout=timeout, what=what
    )


async def on_broker(call: Awaitable[T], *, timeout: float | None, what: str) -> T:
    """Await a broker call; 503 if it fails or takes longer than ``timeout`` seconds (None: the
    call bounds itself, as the task publisher does per batch)."""
    try:
        if timeout is None:
            return await call
        # asyncio's own timeout: a fraction of the cost of a cancel scope.
        async with asyncio.timeout(timeout):
            return await call
    except TimeoutError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"broker unavailable: {what} timed out",
        ) from None
    except BROKER_ERRORS as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"broker unavailable: {what} failed ({type(exc).__name__})",
        ) from None
