"""Many coroutines waiting for Redis pub/sub messages, over one connection.

A long-poll that opens a pub/sub connection per waiting client holds one Redis connection per
client for as long as it waits: enough of them exhaust the pool that publishing needs too.
Here every waiter of a process shares one subscribed connection (one SUBSCRIBE per channel,
however many wait on it), and the number of waiters is capped: past the cap ``watch`` raises
``TooManyWaiters`` at once instead of queueing.

redis-py reconnects a pub/sub connection and subscribes again by itself; messages published
while it was down are lost, so every waiter is then woken to read the state again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class TooManyWaiters(RuntimeError):
    """The cap on waiters is reached: the caller should answer "try again later"."""


class ChannelWaiter:
    def __init__(
        self, client: aioredis.Redis, *, max_waiters: int, is_final: Callable[[bytes], bool]
    ) -> None:
        """``client``: a client of its own (its pool gives the one pub/sub connection).
        ``is_final(data)``: whether a message on a channel ends the wait on it."""
        self.client = client
        self.max_waiters = max_waiters
        self.is_final = is_final
        self._pubsub = client.pubsub()
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._subscribed: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiters.values())

    @contextlib.asynccontextmanager
    async def watch(self, channel: str) -> AsyncIterator[asyncio.Future[None]]:
        """Subscribe to ``channel``; once subscribed (confirmed by Redis, so a message
        published after this point is seen), yield a future that is done when a final message
        arrives on it, or when the connection was lost (read the state again)."""
        if self.waiting >= self.max_waiters:
            raise TooManyWaiters(f"{self.waiting} clients are waiting already")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, set()).add(done)
        try:
            await self._subscribe(channel)
            yield done
        finally:
            waiters = self._waiters.get(channel, set())
            waiters.discard(done)
            if not waiters:
                self._waiters.pop(channel, None)
                if self._subscribed.pop(channel, None) is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        confirmed = self._subscribed.get(channel)
        if confirmed is None:
            confirmed = self._subscribed[channel] = asyncio.get_running_loop().create_future()
            await self._pubsub.subscribe(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        await asyncio.shield(confirmed)

    async def _read_forever(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # redis-py reconnects and subscribes again on the next read
                log.warning("result wait connection lost, reconnecting: %r", exc)
                self._wake_all()
                await asyncio.sleep(0.5)
                continue
            if message is not None:
                self._dispatch(message)

    def _dispatch(self, message: dict[str, object]) -> None:
        channel = message.get("channel")
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        if message["type"] == "subscribe":
            confirmed = self._subscribed.get(name)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif message["type"] == "message":
            data = message["data"]
            if isinstance(data, bytes) and self.is_final(data):
                for done in self._waiters.get(name, ()):
                    if not done.done():
                        done.set_result(None)

    def _wake_all(self) -> None:
        for futures in self._waiters.values():
            for done in futures:
                if not done.done():
                    done.set_result(None)
        # A subscription made again after the reconnect is confirmed again.
        for confirmed in self._subscribed.values():
            if not confirmed.done():
                confirmed.set_result(None)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
