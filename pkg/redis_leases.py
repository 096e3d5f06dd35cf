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
        self.client = redis.Redis(connection_pool=redis.ConnectionPool(**connparams))
        self._append = self.client.register_script(APPEND_LUA)
        self._ack = self.client.register_script(ACK_LUA)
        self._keys = [keys.index, keys.unacked, self.owner_key]
        # Tags to hand back once Redis answers again (a channel closed by a lost connection).
        self.to_restore: set[str] = set()
        self._keeper: subprocess.Popen[bytes] | None = None
        self._keeper_lock = threading.Lock()

    def append(self, tag: str, stored: str) -> None:
        self._append(keys=self._keys, args=[tag, stored])

    def ack(self, *tags: str) -> None:
        self._ack(keys=self._keys, args=list(tags))

    def ensure_keeper(self) -> None:
        """Start the keeper, or start it again if it died (its leases would run out)."""
        with self._keeper_lock:
            if self._keeper is not None and self._keeper.poll() is None:
                return
            params = {k: v for k, v in self.connparams.items() if k in KEEPER_PARAMS}
            if self.connparams.get("connection_class") is redis.SSLConnection:
                params["ssl"] = True
            config = {
                "redis": params,
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


_leases: Leases | None = None
_leases_lock = threading.Lock()


def leases_for(connparams: dict[str, Any], keys: LeaseKeys) -> Leases:
    """This process's ``Leases`` (a new one after a fork: sockets and keepers are not shared)."""
    global _leases
    with _leases_lock:
        if _leases is None or _leases.pid != os.getpid():
            _leases = Leases(connparams, keys)
            _leases.ensure_keeper()
        return _leases


def current_leases() -> Leases | None:
    """This process's ``Leases`` if it has taken any message, else None."""
    leases = _leases
    return leases if leases is not None and leases.pid == os.getpid() else None
