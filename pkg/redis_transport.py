"""kombu's Redis transport with leases, selected by configuration (never patched in).

Celery picks it with ``broker_transport = "pkg.redis_transport:Transport"`` next to a
``redis://`` broker URL; kombu imports the class by that path. Without the setting, kombu's own
Redis transport runs and nothing here is loaded. What it changes, each in a subclass method:

- **Leases instead of a fixed visibility timeout** (``pkg/redis_leases.py``): the messages a
  live worker holds (running, prefetched, waiting for their ETA) have their lease renewed by a
  keeper process; the ``visibility_timeout`` transport option is the lease length. A sweep hands
  back only leases that ran out, judged by Redis's clock, and none in the first lease after a
  Redis (re)start, when no holder has had the chance to renew yet.
- **A lost broker connection neither kills the worker nor runs a task twice.** kombu would put
  every unacked message back when the channel closes, including the ones still running (their
  ack then fails through the dead channel and the worker exits). Here the running ones stay
  leased and are acked later through the process's own client; the others go back to the front
  of their queues as soon as Redis answers again.
- **Cheaper bookkeeping** (measured in bench/): one ``redis.Redis`` per channel instead of one
  per command (redis-py fills ~170 callbacks into each), and the record/ack of a message as one
  Lua script each instead of MULTI/EXEC pipelines.

kombu outside the tested series is refused at start-up: these methods override kombu internals
that may change between minor versions.
"""

from __future__ import annotations

from typing import Any

import kombu
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps as _untyped_dumps
from kombu.utils.json import loads

from pkg.redis_leases import LeaseKeys, Leases, current_leases, leases_for

dumps: Any = _untyped_dumps

TESTED_KOMBU_SERIES = "5.7"


class UnsupportedKombuVersion(RuntimeError):
    pass


def check_kombu_version(version: str = kombu.__version__) -> None:
    series = ".".join(version.split(".")[:2])
    if series != TESTED_KOMBU_SERIES:
        raise UnsupportedKombuVersion(
            f"pkg.redis_transport is tested with kombu {TESTED_KOMBU_SERIES}.x, but kombu "
            f"{version} is installed: install the pinned versions (requirements/), or select "
            "kombu's own transport (BROKER_TRANSPORT=kombu)"
        )


def running_delivery_tags() -> set[str]:
    """Delivery tags of the tasks this Celery worker process is running right now."""
    try:
        from celery.worker import state
    except ImportError:  # not a Celery worker: nothing runs here
        return set()
    return {r.message.delivery_tag for r in tuple(state.active_requests)}


class QoS(kombu_redis.QoS):
    """Ack emulation on leases (see the module docstring)."""

    @property
    def leases(self) -> Leases:
        channel = self.channel
        keys = LeaseKeys(
            index=channel.unacked_index_key,
            unacked=channel.unacked_key,
            lease_seconds=float(channel.visibility_timeout),
        )
        return leases_for(channel._connparams(), keys)

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        stored = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        _held_leases(self).append(delivery_tag, stored)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        # Through the process's client, not the channel's: the channel may have been closed by a
        # lost connection while this task ran.
        _held_leases(self).ack(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.restore_by_tag(delivery_tag, client=_held_leases(self).client, leftmost=True)
        else:
            _held_leases(self).ack(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        """The channel closes: hand back what is not running; the running tasks keep their
        leases and ack when done. What cannot be handed back now (Redis gone) is handed back
        by the next sweep that reaches Redis."""
        leases = current_leases()
        if leases is None:
            self._delivered.clear()
            return
        running = running_delivery_tags()
        for tag in list(self._delivered):
            if tag in running:
                continue
            try:
                self.restore_by_tag(tag, client=leases.client)
            except Exception:  # Redis or the channel is gone: later
                leases.to_restore.add(tag)
        self._delivered.clear()

    def restore_visible(self, start: int = 0, num: int | None = 10, interval: int = 10) -> None:
        leases = current_leases()
        if leases is not None:
            leases.ensure_keeper()
            self._restore_left_behind(leases)
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        with self.channel.conn_or_acquire() as client:
            seconds, micros = client.time()
            deadline = seconds + micros / 1e6 - self.visibility_timeout
            expired = client.zrange(
                self.unacked_index_key, deadline, 0,
                desc=True, byscore=True, offset=num and start, num=num,
            )  # fmt: skip
            if not expired:
                return
            # Right after a Redis restart every lease looks old: give the holders one lease.
            if int(client.info("server")["uptime_in_seconds"]) < self.visibility_timeout:
                return
            try:
                with kombu_redis.Mutex(client, self.unacked_mutex_key, self.unacked_mutex_expire):
                    for tag in expired:
                        self._restore_if_expired(tag, client, deadline)
            except kombu_redis.MutexHeld:
                pass

    def _restore_if_expired(self, tag: str | bytes, client: Any, deadline: float) -> None:
        """Hand one message back unless its holder renewed the lease in the meantime (the
        index is watched, so a renewal in between makes the transaction run again)."""

        def restore(pipe: Any) -> None:
            score = pipe.zscore(self.unacked_index_key, tag)
            stored = pipe.hget(self.unacked_key, tag)
            if score is None or score > deadline:
                return
            pipe.multi()
            self._remove_from_indices(tag, pipe)
            if stored:
                message, exchange, routing_key = loads(bytes_to_str(stored))
                self.channel._do_restore_message(message, exchange, routing_key, pipe)

        client.transaction(restore, self.unacked_key, self.unacked_index_key)

    def _restore_left_behind(self, leases: Leases) -> None:
        for tag in list(leases.to_restore):
            try:
                self.restore_by_tag(tag)  # to the front of its queue, like an expired lease
            except Exception:  # not reachable yet: at the next sweep
                return
            leases.to_restore.discard(tag)


def _held_leases(qos: QoS) -> Leases:
    return current_leases() or qos.leases


class Channel(kombu_redis.Channel):
    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.global_keyprefix:
            raise ValueError(
                "pkg.redis_transport does not support global_keyprefix (its scripts name "
                "their keys); use a Redis database of its own, or BROKER_TRANSPORT=kombu"
            )

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the event loop's client is kept by kombu already (Channel.client)
            return super()._create_client(asynchronous=True)
        client = self.__dict__.get("_shared_client")
        if client is None or client.connection_pool is not self.pool:
            client = self.__dict__["_shared_client"] = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_kombu_version()
        super().__init__(*args, **kwargs)
