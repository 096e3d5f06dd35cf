"""Leases on the messages a worker process holds: its owner set, bookkeeping scripts and keeper.

kombu's Redis transport emulates acks: a delivered message is kept in the ``unacked`` hash with
its delivery time in the ``unacked_index`` sorted set, and any worker puts it back on its queue
once that time is older than the visibility timeout. One fixed timeout cannot be both short
(a lost worker's tasks come back quickly) and long (a long task or a far ETA is not run twice).
Leases make it both: the time in the index is the start of a *lease* that the holder's
keeper (``pkg/lease_keeper.py``, a process of its own) renews every ``lease / 5`` seconds
while the holder lives, so only the messages of a worker that is gone ever expire.

Each process that holds messages has one ``Leases``: an owner set listing the delivery tags it
holds (added with the message, removed with its ack, in the same Lua script, so the set and
the index always agree), its own Redis client (independent of any channel, so an ack still goes
through after the channel it came from was closed by a lost connection), and its keeper.
Every time in these keys is Redis's own clock, so hosts with skewed clocks agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis
from kombu.utils.encoding import bytes_to_str

from pkg.lease_keeper import connect
from pkg.untraced_redis import plumbing_redis_class

KEEPER_SCRIPT = Path(__file__).with_name("lease_keeper.py")
# Renewals per lease: a keeper may miss four in a row (a loaded machine, a slow Redis) before
# its messages expire.
RENEWALS_PER_LEASE = 5
# An owner set outlives its last renewal this many leases, then Redis drops it.
OWNER_TTL_LEASES = 10

# KEYS: unacked index, unacked hash, owner set. ARGV: delivery tag, stored message.
APPEND_LUA = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
"""
# Ack the tags in ARGV[3...] (ARGV[2] of them), then pop up to ARGV[1] messages, in the order
# of KEYS[4...] (queue lists, highest priority first), and record each as unacked and leased in
# the same atomic step: a worker that dies right after the fetch still has every message it
# took on record. Replies [list, message, ...].
# KEYS: unacked index, unacked hash, owner set, then the queue lists.
FETCH_LUA = """
local ROUTE = '"delivery_info": ?{"exchange": ?("[%w%-_.:]*"), ?"routing_key": ?("[%w%-_.:]*")}'
local acks = tonumber(ARGV[2])
if acks > 0 then
  local tags = {unpack(ARGV, 3, 2 + acks)}
  redis.call('ZREM', KEYS[1], unpack(tags))
  redis.call('HDEL', KEYS[2], unpack(tags))
  redis.call('SREM', KEYS[3], unpack(tags))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local wanted = tonumber(ARGV[1])
local out = {}
for i = 4, #KEYS do
  while #out < 2 * wanted do
    local item = redis.call('RPOP', KEYS[i])
    if not item then break end
    -- A quoted key cannot occur inside a JSON string (its quotes would be escaped), so these
    -- patterns find the message's own properties (the last key, so searched from there);
    -- anything unusual takes a full decode.
    local from = string.find(item, '"properties":', 1, true) or 1
    local tag = string.match(item, '"delivery_tag": ?"([%w%-]+)"', from)
    local exchange, routing_key = string.match(item, ROUTE, from)
    if not (tag and exchange) then
      local properties = cjson.decode(item)['properties']
      tag = properties['delivery_tag']
      exchange = cjson.encode(properties['delivery_info']['exchange'])
      routing_key = cjson.encode(properties['delivery_info']['routing_key'])
    end
    redis.call('ZADD', KEYS[1], now, tag)
    -- As kombu stores it: [message, exchange, routing key].
    redis.call('HSET', KEYS[2], tag, '[' .. item .. ',' .. exchange .. ',' .. routing_key .. ']')
    redis.call('SADD', KEYS[3], tag)
    out[#out + 1] = KEYS[i]
    out[#out + 1] = item
  end
end
return out
"""
# Redis names a script by its SHA-1 (not a security use).
FETCH_SHA = hashlib.sha1(FETCH_LUA.encode(), usedforsecurity=False).hexdigest()
# KEYS: unacked index, unacked hash, owner set. ARGV: delivery tags.
ACK_LUA = """
redis.call('ZREM', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[2], unpack(ARGV))
redis.call('SREM', KEYS[3], unpack(ARGV))
"""

# What of kombu's connection parameters the keeper needs (JSON: no classes, no callables).
KEEPER_PARAMS = (
    "host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
    "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs",
)  # fmt: skip


@dataclass(frozen=True)
class LeaseKeys:
    index: str
    unacked: str
    lease_seconds: float


class Leases:
    """The leases of one process (see the module docstring); use ``leases_for``."""

    def __init__(self, connparams: dict[str, Any], keys: LeaseKeys) -> None:
        self.keys = keys
        self.pid = os.getpid()
        self.owner_key = f"unacked_owner.{socket.gethostname()}.{self.pid}.{secrets.token_hex(4)}"
        self.connparams = connparams
        # A Sentinel group (``"sentinel"``: its sentinels, master name and their kwargs): a
        # client that finds the master again after a failover, as the keeper's does.
        self.sentinel: dict[str, Any] | None = connparams.get("sentinel")
        if self.sentinel is None:
            pool = redis.ConnectionPool(**connparams)
            self.client = plumbing_redis_class()(connection_pool=pool)
        else:
            self.client = connect(self._keeper_params(), self.sentinel)
        self._append = self.client.register_script(APPEND_LUA)
        self._ack = self.client.register_script(ACK_LUA)
        self._keys = [keys.index, keys.unacked, self.owner_key]
        # Tags to hand back once Redis answers again (a channel closed by a lost connection).
        self.to_restore: set[str] = set()
        # A fetch's reply was lost with its connection: what it recorded is owned but held by
        # nobody, so the next sweep hands back what this process owns and does not hold.
        self.check_owned = False
        # Acks not yet written: an event loop writes those of one loop turn in one command.
        self._pending_acks: list[str] = []
        self._acks_lock = threading.Lock()
        self._keeper: subprocess.Popen[bytes] | None = None
        self._keeper_lock = threading.Lock()

    def append(self, tag: str, stored: str) -> None:
        self._append(keys=self._keys, args=[tag, stored])

    def ack(self, *tags: str) -> None:
        self._ack(keys=self._keys, args=list(tags))

    def fetch_command(self, queue_keys: list[str], wanted: int, acks: list[str]) -> list[Any]:
        """The EVALSHA that writes ``acks`` and pops and records up to ``wanted`` messages (see
        ``FETCH_LUA``), to send on a connection of the caller's (kombu's event-loop one). A
        NOSCRIPT reply (Redis restarted) means it did nothing: ``load_fetch``, then again."""
        keys = [*self._keys, *queue_keys]
        return ["EVALSHA", FETCH_SHA, len(keys), *keys, wanted, len(acks), *acks]

    def load_fetch(self) -> None:
        self.client.script_load(FETCH_LUA)

    def ack_later(self, tag: str) -> None:
        with self._acks_lock:
            self._pending_acks.append(tag)

    def take_acks(self) -> list[str]:
        """The acks not yet written, for a caller that writes them (``fetch_command``); on a
        failure it hands them back with ``keep_acks``."""
        with self._acks_lock:
            tags, self._pending_acks = self._pending_acks, []
        return tags

    def keep_acks(self, tags: list[str]) -> None:
        with self._acks_lock:
            self._pending_acks[:0] = tags

    def pending_acks(self) -> set[str]:
        with self._acks_lock:
            return set(self._pending_acks)

    def owned(self) -> set[str]:
        return {bytes_to_str(tag) for tag in self.client.smembers(self.owner_key)}  # type: ignore[no-untyped-call]

    def flush_acks(self) -> None:
        """Write the acks held by ``ack_later``; on a Redis error keep them for the next try."""
        tags = self.take_acks()
        if not tags:
            return
        try:
            self.ack(*tags)
        except redis.RedisError:
            self.keep_acks(tags)
            raise

    def _keeper_params(self) -> dict[str, Any]:
        """The connection parameters as JSON (no classes): the keeper's, and for a Sentinel
        group those of its master (the sentinels name the host)."""
        params = {k: v for k, v in self.connparams.items() if k in KEEPER_PARAMS}
        if self.connparams.get("connection_class") is redis.SSLConnection:
            params["ssl"] = True
        if self.sentinel is not None:
            params.pop("host", None)
            params.pop("port", None)
        return params

    def ensure_keeper(self) -> None:
        """Start the keeper, or start it again if it died (its leases would run out)."""
        with self._keeper_lock:
            if self._keeper is not None and self._keeper.poll() is None:
                return
            config = {
                "redis": self._keeper_params(),
                "sentinel": self.sentinel,
                "owner_key": self.owner_key,
                "index_key": self.keys.index,
                "renew_seconds": self.keys.lease_seconds / RENEWALS_PER_LEASE,
                "owner_ttl_seconds": int(self.keys.lease_seconds * OWNER_TTL_LEASES) + 1,
            }
            # Its own session: a terminal's Ctrl-C must not stop the renewals while the worker
            # itself is still finishing its tasks.
            self._keeper = subprocess.Popen(
                [sys.executable, str(KEEPER_SCRIPT)], stdin=subprocess.PIPE, start_new_session=True
            )
            stdin: IO[bytes] | None = self._keeper.stdin
            assert stdin is not None
            stdin.write(json.dumps(config).encode() + b"\n")
            stdin.flush()


_registry: dict[tuple[Any, ...], Leases] = {}
_registry_lock = threading.Lock()


def _registry_key(connparams: dict[str, Any], keys: LeaseKeys) -> tuple[Any, ...]:
    target = tuple(connparams.get(k) for k in ("host", "port", "path", "db"))
    master = (connparams.get("sentinel") or {}).get("master_name")
    return (*target, master, keys.index, keys.unacked)


def _this_process() -> dict[tuple[Any, ...], Leases]:
    """The registry, emptied after a fork (sockets and keepers are not shared)."""
    if any(leases.pid != os.getpid() for leases in _registry.values()):
        _registry.clear()
    return _registry


def leases_for(connparams: dict[str, Any], keys: LeaseKeys) -> Leases:
    """This process's ``Leases`` for one Redis and one set of unacked keys, made on first use."""
    key = _registry_key(connparams, keys)
    with _registry_lock:
        registry = _this_process()
        if key not in registry:
            registry[key] = Leases(connparams, keys)
            registry[key].ensure_keeper()
        return registry[key]


def known_leases(connparams: dict[str, Any], keys: LeaseKeys) -> Leases | None:
    """``leases_for`` if this process has taken a message there, else None."""
    with _registry_lock:
        return _this_process().get(_registry_key(connparams, keys))


def all_leases() -> list[Leases]:
    with _registry_lock:
        return list(_this_process().values())
