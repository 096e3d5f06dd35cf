"""Cheaper per-message work in kombu's Redis transport, applied on import (measured in bench/).

The worker's main process does every broker round trip of every task one after the other, so
what it spends per message caps a whole worker's throughput, whatever its concurrency.
Profiling it (py-spy, bench/README.md) showed two costs worth removing; behaviour is unchanged:

1. kombu builds a fresh ``redis.Redis`` object for every publish, ack and event
   (``Channel._create_client``). The sockets come from the channel's pool either way, but
   redis-py fills about 170 response callbacks into each new object: a quarter of a millisecond,
   a third of what publishing a task cost. A ``redis.Redis`` is safe to share between threads
   (each command borrows a pooled connection), so one per channel is kept, and rebuilt when the
   channel gets a new pool.
2. Late-ack bookkeeping (``QoS.append`` when a message arrives, ``QoS.ack`` when its task is done)
   is a MULTI/EXEC pipeline of two commands each: four commands to pack and four replies to parse.
   One Lua script per step does the same two writes, just as atomically, in one command.

Channels with a ``global_keyprefix`` keep kombu's own code (their keys are rewritten by a client
wrapper that does not know scripts).
"""

from __future__ import annotations

from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps as _untyped_dumps

dumps: Any = _untyped_dumps

_original_create_client: Any = kombu_redis.Channel._create_client
_original_append: Any = kombu_redis.QoS.append
_original_ack: Any = kombu_redis.QoS.ack

_SHARED_CLIENT = "_speedups_client"
_SCRIPTS = "_speedups_scripts"
# KEYS: unacked index (sorted set by delivery time), unacked messages (hash by delivery tag).
APPEND_LUA = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""
ACK_LUA = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
"""


def _create_client(self: Any, asynchronous: bool = False) -> Any:
    if asynchronous:  # the event-loop client is already kept by kombu (Channel.client)
        return _original_create_client(self, asynchronous=True)
    pool = self.pool
    client = self.__dict__.get(_SHARED_CLIENT)
    if client is None or client.connection_pool is not pool:
        client = self.__dict__[_SHARED_CLIENT] = _original_create_client(self)
        self.__dict__[_SCRIPTS] = {
            "append": client.register_script(APPEND_LUA),
            "ack": client.register_script(ACK_LUA),
        }
    return client


def _script(channel: Any, name: str) -> Any:
    channel._create_client()  # (re)builds the shared client and its scripts when needed
    return channel.__dict__[_SCRIPTS][name]


def _append(self: Any, message: Any, delivery_tag: str) -> None:
    if self.channel.global_keyprefix:
        return _original_append(self, message, delivery_tag)  # type: ignore[no-any-return]
    delivery = message.delivery_info
    payload = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
    _script(self.channel, "append")(
        keys=[self.unacked_index_key, self.unacked_key], args=[time(), delivery_tag, payload]
    )
    virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
    return None


def _ack(self: Any, delivery_tag: str) -> None:
    if self.channel.global_keyprefix:
        return _original_ack(self, delivery_tag)  # type: ignore[no-any-return]
    _script(self.channel, "ack")(
        keys=[self.unacked_index_key, self.unacked_key], args=[delivery_tag]
    )
    virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
    return None


kombu_redis.Channel._create_client = _create_client  # type: ignore[method-assign]
kombu_redis.QoS.append = _append  # type: ignore[method-assign]
kombu_redis.QoS.ack = _ack  # type: ignore[method-assign]
