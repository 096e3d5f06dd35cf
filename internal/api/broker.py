"""Run a blocking broker call off the event loop, with a deadline, and turn failures into 503."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import redis
from fastapi import HTTPException, status
from kombu.exceptions import OperationalError

T = TypeVar("T")

BROKER_ERRORS = (OperationalError, redis.RedisError, OSError, TimeoutError)


async def off_loop(fn: Callable[[], T], *, timeout: float, what: str) -> T:
    """``fn()`` in a worker thread (Celery and redis-py block); 503 if it fails or is late."""
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
    except TimeoutError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"broker unavailable: {what} took longer than {timeout:g} s",
        ) from None
    except BROKER_ERRORS as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"broker unavailable: {what} failed ({type(exc).__name__})",
        ) from None
