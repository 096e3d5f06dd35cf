"""Revokes that hold until the task would have run, kept in Redis.

Celery broadcasts a revoke to the workers connected at that moment, which keep it in memory
(for three hours). A revoke sent while no worker is connected, or before a worker restarts
(without a state file; reloading dev workers also skip mingle, which copies revokes from
peers), is lost, and the task runs. Here every revoke is also written to a Redis sorted set
(task id, scored by when to forget it), and each worker's main process copies the set into
Celery's own in-memory revoke list when it starts and whenever it changed (checked at every
worker heartbeat, every 2 s: one GET), and again every ``REFRESH_SECONDS`` so Celery's
three-hour expiry never drops one that should still hold.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import redis

log = logging.getLogger(__name__)

# Copy the whole set again at least this often, whatever the version says.
REFRESH_SECONDS = 600.0


class RevokeSet(Protocol):
    def add(self, item: Any) -> None: ...


class RevokeStore:
    def __init__(self, client: redis.Redis, *, key: str, hold_seconds: float) -> None:
        self.client = client
        self.key = key
        self.version_key = f"{key}:version"
        self.hold_seconds = hold_seconds
        self._loaded_version: bytes | str | None = None
        self._loaded_at = float("-inf")

    def add(self, task_id: str) -> None:
        """Remember a revoke for ``hold_seconds`` (and forget the ones past theirs)."""
        now = time.time()
        with self.client.pipeline() as pipe:
            pipe.zadd(self.key, {task_id: now + self.hold_seconds})
            pipe.zremrangebyscore(self.key, "-inf", now)
            pipe.incr(self.version_key)
            pipe.execute()

    def copy_into(self, revoked: RevokeSet) -> None:
        """Add every revoke still held to ``revoked`` if the set changed since the last copy
        (or ``REFRESH_SECONDS`` passed). Redis unreachable: try again next time."""
        try:
            version = self.client.get(self.version_key)
            if version == self._loaded_version and time.monotonic() < self._loaded_at + (
                REFRESH_SECONDS
            ):
                return
            for task_id in self.client.zrangebyscore(self.key, time.time(), "+inf"):
                revoked.add(task_id.decode() if isinstance(task_id, bytes) else str(task_id))
        except redis.RedisError as exc:
            log.warning("revokes not loaded from Redis, retrying at the next heartbeat: %r", exc)
            return
        self._loaded_version, self._loaded_at = version, time.monotonic()
