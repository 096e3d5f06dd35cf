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
- **Fewer round trips per task** (measured in bench/; each one costs the worker's main process a
  wait on Redis): while the queues hold messages, one Lua script pops as many as the prefetch
  limit allows and records them as unacked and leased in the same atomic step (kombu: one BRPOP
  per message, then a MULTI/EXEC to record it, with a window where a crash loses it); BRPOP is
  kept for waiting on empty queues. Acks made during one turn of the event loop are written
  together in one script at the start of the next turn, and before a channel closes (a worker
  killed inside that turn runs those tasks again: delivery stays at least once). One
  ``redis.Redis`` per channel instead of one per command (redis-py fills ~170 callbacks into
  each).

kombu outside the tested series is refused at start-up: these methods override kombu internals
that may change between minor versions.
"""

from __future__ import annotations

import contextlib
import os
from queue import Empty
from time import monotonic
from typing import Any
from urllib.parse import urlsplit

import kombu
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps as _untyped_dumps
from kombu.utils.json import loads
from redis.exceptions import NoScriptError

from pkg.redis_leases import LeaseKeys, Leases, all_leases, known_leases, leases_for
from pkg.untraced_redis import plumbing_redis_class

dumps: Any = _untyped_dumps

TESTED_KOMBU_SERIES = "5.7"
# Most messages one fetch may take (the prefetch limit usually says fewer).
MAX_FETCH = 100


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

    _leases: Leases | None = None

    def _lease_keys(self) -> LeaseKeys:
        channel = self.channel
        return LeaseKeys(
            index=channel.unacked_index_key,
            unacked=channel.unacked_key,
            lease_seconds=float(channel.visibility_timeout),
        )

    @property
    def leases(self) -> Leases:
        """This process's leases for the channel's Redis and keys (kept after the channel
        closes: an ack of a task that outlived its channel still goes through)."""
        if self._leases is None or self._leases.pid != os.getpid():
            self._leases = leases_for(self.channel.lease_params(), self._lease_keys())
        return self._leases

    def known_leases(self) -> Leases | None:
        """``leases`` if this process has taken a message there (maybe on an earlier channel)."""
        if self._leases is not None and self._leases.pid == os.getpid():
            return self._leases
        try:
            return known_leases(self.channel.lease_params(), self._lease_keys())
        except AttributeError:  # a closed channel's connection is gone
            return None

    def append(self, message: Any, delivery_tag: str) -> None:
        recorded = self.channel.recorded
        if delivery_tag in recorded:  # the fetch script recorded it already
            recorded.discard(delivery_tag)
        else:
            delivery = message.delivery_info
            stored = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            self.leases.append(delivery_tag, stored)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        # Through the process's client, not the channel's: the channel may have been closed by a
        # lost connection while this task ran.
        leases = self.leases
        if getattr(self.channel.connection, "acks_per_turn", False):
            leases.ack_later(delivery_tag)
        else:
            leases.ack(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.restore_by_tag(delivery_tag, client=self.leases.client, leftmost=True)
        else:
            self.leases.ack(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> None:
        """The channel closes: hand back what is not running; the running tasks keep their
        leases and ack when done. What cannot be handed back now (Redis gone) is handed back
        by the next sweep that reaches Redis."""
        leases = self.known_leases()
        if leases is None:
            self._delivered.clear()
            return
        if self.channel._fetching:
            self.channel._fetch_lost()
        with contextlib.suppress(Exception):  # Redis gone: written at a later turn or sweep
            leases.flush_acks()  # acked tasks must not look unacked once the channel is gone
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
        leases = self.known_leases()
        if leases is not None:
            leases.ensure_keeper()
            self._restore_left_behind(leases)
            if leases.check_owned and not self.channel._fetching:
                self.hand_back_unheld(leases)
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

    def hand_back_unheld(self, leases: Leases) -> None:
        """Hand back what this process owns but holds nowhere: messages recorded by a fetch
        whose reply was lost with its connection, so never delivered."""
        held = (
            set(self._delivered)
            | running_delivery_tags()
            | leases.to_restore
            | leases.pending_acks()
            | self.channel.recorded
        )
        for tag in leases.owned() - held:
            self.restore_by_tag(tag)
        leases.check_owned = False

    def _restore_left_behind(self, leases: Leases) -> None:
        for tag in list(leases.to_restore):
            try:
                self.restore_by_tag(tag)  # to the front of its queue, like an expired lease
            except Exception:  # not reachable yet: at the next sweep
                return
            leases.to_restore.discard(tag)


class Channel(kombu_redis.Channel):
    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Delivery tags the fetch script recorded, until QoS.append sees them.
        self.recorded: set[str] = set()
        # Fetch with the script while the queues have messages; BRPOP to wait when they do not.
        self._queues_busy = True
        self._fetching = False
        self._acks_in_flight: list[str] = []
        self._no_ack_queues: set[str] = set()
        super().__init__(*args, **kwargs)
        if self.global_keyprefix:
            raise ValueError(
                "pkg.redis_transport does not support global_keyprefix (its scripts name "
                "their keys); use a Redis database of its own, or BROKER_TRANSPORT=kombu"
            )

    def lease_params(self) -> dict[str, Any]:
        """Where the leases are kept: this channel's Redis (``pkg.redis_leases``)."""
        return dict(self._connparams())

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:  # nothing would ever ack what the script records for these
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def fetches_by_script(self) -> bool:
        """Whether the next fetch is the script (queues had messages, every consumer acks)
        rather than kombu's BRPOP, which waits on empty queues."""
        return self._queues_busy and not self._no_ack_queues.intersection(self.active_queues)

    def fetch_size(self) -> int:
        """How many messages the script fetches: as many as the prefetch window has room for
        when an event loop drives the connection (a worker); one for ``drain_events()``
        callers, which get one message per call from kombu's transports.

        Tried and dropped: waiting until a quarter of the window is free, for bigger batches.
        The acks of the tasks done meanwhile then went in writes of their own, so the round
        trips per task stayed the same and throughput fell (1.90x stock against 2.10x)."""
        if not getattr(self.connection, "acks_per_turn", False):
            return 1
        free = self.qos.can_consume_max_estimate()
        return MAX_FETCH if free is None else max(1, min(free, MAX_FETCH))

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self.fetches_by_script():
            super()._brpop_start(timeout)
            return None
        wanted = self.fetch_size()
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        leases = self.qos.leases
        self._acks_in_flight = leases.take_acks()  # written by the same script
        command = leases.fetch_command(keys, wanted, self._acks_in_flight)
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()  # type: ignore[assignment]
        self._fetching = True
        self.client.connection.send_command(*command)
        return None

    def _fetch_lost(self) -> None:
        """The fetch's reply is lost with its connection: its acks go again, and what it may
        have recorded is checked at the next sweep (``QoS.hand_back_unheld``)."""
        self._fetching = False
        leases = self.qos.leases
        leases.keep_acks(self._acks_in_flight)
        self._acks_in_flight = []
        leases.check_owned = True

    def _on_connection_disconnect(self, connection: Any) -> None:
        if self._fetching and connection is self._in_poll:
            self._fetch_lost()
        super()._on_connection_disconnect(connection)

    def _brpop_read(self, **options: Any) -> bool:
        if not self._fetching:
            delivered = bool(super()._brpop_read(**options))  # raises Empty on a timeout
            self._queues_busy = True  # a message came: there may be more behind it
            return delivered
        self._fetching = False
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVALSHA", **options)
            except self.connection_errors:
                self._fetch_lost()
                self.client.connection.disconnect()
                raise
            except NoScriptError:  # a new Redis: the script did nothing; load it, fetch again
                leases = self.qos.leases
                leases.keep_acks(self._acks_in_flight)
                self._acks_in_flight = []
                leases.load_fetch()
                raise Empty() from None
            self._acks_in_flight = []
            if not reply:
                self._queues_busy = False
                raise Empty()
            self._deliver_fetched(reply)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _deliver_fetched(self, reply: list[bytes]) -> None:
        fetched = [
            (bytes_to_str(key).rsplit(self.sep, 1)[0], loads(bytes_to_str(item)))
            for key, item in zip(reply[::2], reply[1::2], strict=True)
        ]
        tags = [payload["properties"]["delivery_tag"] for _, payload in fetched]
        self.recorded.update(tags)
        try:
            for queue, payload in fetched:
                self._queue_cycle.rotate(queue)
                self.connection._deliver(payload, queue)
        finally:
            # A delivery that raised leaves recorded messages nobody holds: hand them back.
            for tag in tags:
                if tag in self.recorded:
                    self.recorded.discard(tag)
                    self.qos.restore_by_tag(tag)

    def _get_client(self) -> Any:
        super()._get_client()  # kombu's check of the redis-py version
        return plumbing_redis_class()  # traced only inside a recorded span

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the event loop's client is kept by kombu already (Channel.client)
            return super()._create_client(asynchronous=True)
        client = self.__dict__.get("_shared_client")
        if client is None or client.connection_pool is not self.pool:
            client = self.__dict__["_shared_client"] = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
    # Set once an event loop drives this connection: acks then wait for the next loop turn.
    acks_per_turn = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_kombu_version()
        super().__init__(*args, **kwargs)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        global _looped
        super().register_with_event_loop(connection, loop)
        loop.on_tick.add(flush_pending_acks)  # the same function each time: added once
        self.acks_per_turn = True
        _looped = self

    def fetch_carries_acks(self) -> bool:
        """Whether a fetch will carry the pending acks: one is in flight (the next follows its
        reply), or a consuming channel sends one this loop turn."""
        return any(
            channel._fetching
            or (
                channel.active_queues
                and not channel._in_poll
                and channel.qos.can_consume()
                and channel.fetches_by_script()
            )
            for channel in getattr(self.cycle, "_channels", ())
        )


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The leased channel on a Sentinel-managed Redis: kombu's Sentinel channel finds the
    master; the leases (their own client and the keeper's) follow it through a failover."""

    def lease_params(self) -> dict[str, Any]:
        params = super().lease_params()
        sentinels = [
            (url.hostname, url.port or self.connection.default_port)
            for url in map(urlsplit, self.connection.client.alt)
            if url.scheme == "sentinel"
        ] or [(params["host"], params["port"])]
        master_name = getattr(self, "master_name", None)
        if master_name is None:
            raise ValueError("'master_name' transport option must be specified.")
        params["sentinel"] = {
            "sentinels": sentinels,
            "master_name": master_name,
            "sentinel_kwargs": dict(getattr(self, "sentinel_kwargs", None) or {}),
        }
        return params


class SentinelTransport(Transport, kombu_redis.SentinelTransport):
    """``Transport`` on a Sentinel group (``sentinel://`` URLs and the ``master_name``
    transport option, as kombu's own Sentinel transport takes them)."""

    Channel = SentinelChannel


# The transport an event loop drives in this process (the worker's consumer connection).
_looped: Transport | None = None


def flush_pending_acks() -> None:
    """At each loop turn: write the acks of the last turn in one command, unless a fetch
    carries them. A Redis error is the connection's business: the acks stay pending
    and go with the next turn."""
    if _looped is not None and _looped.fetch_carries_acks():
        return
    for leases in all_leases():
        try:
            leases.flush_acks()
        except Exception as exc:
            kombu_redis.logger.warning("acks not written yet, retrying next turn: %r", exc)
