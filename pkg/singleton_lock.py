"""Run at most one instance of a process cluster-wide, with standbys: a renewed Redis lock.

The holder renews the lock every ``ttl / 3`` seconds; a standby blocks in ``__enter__`` until
the lock is free (the holder stopped, or died and its lock expired after ``ttl``). If the
holder cannot renew for a whole ``ttl`` (Redis gone, or the key lost), ``on_lost`` is called:
it must stop the work, because another instance may take over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

import redis
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)


class SingletonLock:
    def __init__(
        self,
        client: redis.Redis,
        name: str,
        *,
        ttl: float = 30.0,
        on_lost: Callable[[], None],
    ) -> None:
        self.name = name
        self.ttl = ttl
        self.on_lost = on_lost
        self._lock = client.lock(name, timeout=ttl, thread_local=False)
        self._stop = threading.Event()

    def __enter__(self) -> SingletonLock:
        waiting_logged = False
        while True:
            try:
                if self._lock.acquire(blocking=True, blocking_timeout=self.ttl / 3):
                    break
            except RedisError as exc:
                log.warning("lock %s: Redis unavailable (%s); retrying", self.name, exc)
                time.sleep(1)
                continue
            if not waiting_logged:
                log.warning("lock %s is held by another instance: standing by", self.name)
                waiting_logged = True
        log.info("lock %s acquired", self.name)
        threading.Thread(target=self._renew, name=f"renew {self.name}", daemon=True).start()
        return self

    def _renew(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()
                last_ok = time.monotonic()
            except LockError:
                log.error("lock %s was lost (taken over or expired): stopping", self.name)
                self.on_lost()
                return
            except RedisError as exc:
                if time.monotonic() - last_ok > self.ttl:
                    log.error(
                        "lock %s could not be renewed for %.0f s: stopping", self.name, self.ttl
                    )
                    self.on_lost()
                    return
                log.warning("lock %s: renewal failed (%s); retrying", self.name, exc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        # Expired or unreachable: nothing to release.
        with contextlib.suppress(LockError, RedisError):
            self._lock.release()
