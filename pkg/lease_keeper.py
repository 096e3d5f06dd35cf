"""The lease keeper: a small process that renews a worker's leases on the messages it holds.

Started by ``pkg.redis_leases`` in the worker's main process, one per process, as
``python pkg/lease_keeper.py``, with its settings as one JSON line on stdin (so the Redis
password is never on a command line). Every ``renew_seconds`` it moves the lease of every
message in the worker's owner set forward to Redis's own clock, and forgets those already acked
or handed back. It is a process of its own, not a thread, so a task that blocks the worker's
main process (the solo pool) or holds the GIL cannot starve the renewals into a redelivery.

It stops as soon as its worker is gone: stdin reaches EOF when the worker exits or is killed,
and its parent process changes when the worker dies while a forked pool child still holds the
pipe. Then the leases run out and any worker's sweep hands the messages to a live worker.
Imports nothing of the project (only redis-py), so it starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from typing import Any

import redis

# KEYS: owner set, unacked index (sorted set: tag -> lease start, Redis time).
# ARGV: seconds the owner set outlives its keeper (so a dead worker leaves nothing behind).
RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tags = redis.call('SMEMBERS', KEYS[1])
for _, tag in ipairs(tags) do
  if redis.call('ZSCORE', KEYS[2], tag) then
    redis.call('ZADD', KEYS[2], 'XX', now, tag)
  else
    redis.call('SREM', KEYS[1], tag)
  end
end
if #tags > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return #tags
"""


def parent_gone(parent: int) -> bool:
    return os.getppid() != parent


def stdin_closed(timeout: float) -> bool:
    """Wait up to ``timeout`` s; True once stdin reaches EOF (the worker closed its end)."""
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return bool(ready) and not os.read(sys.stdin.fileno(), 4096)


def connect(params: dict[str, Any], sentinel: dict[str, Any] | None = None) -> redis.Redis:
    """A client of the Redis in ``params``; with ``sentinel`` (sentinels, master_name,
    sentinel_kwargs), of that Sentinel group's master, found again after a failover."""
    if sentinel is None:
        return redis.Redis(**params)
    from redis.sentinel import Sentinel

    sentinels = [(host, int(port)) for host, port in sentinel["sentinels"]]
    # redis-py's Sentinel classes carry no type hints.
    group = Sentinel(sentinels, sentinel_kwargs=sentinel["sentinel_kwargs"], **params)  # type: ignore[no-untyped-call]
    client: redis.Redis = group.master_for(sentinel["master_name"])  # type: ignore[no-untyped-call]
    return client


def run(config: dict[str, Any]) -> int:
    parent = os.getppid()
    client = connect(config["redis"], config.get("sentinel"))
    renew = client.register_script(RENEW_LUA)
    keys = [config["owner_key"], config["index_key"]]
    every = float(config["renew_seconds"])
    owner_ttl = int(config["owner_ttl_seconds"])
    next_renewal = 0.0
    while not parent_gone(parent):
        now = time.monotonic()
        if now >= next_renewal:
            try:
                renew(keys=keys, args=[owner_ttl])
                next_renewal = now + every
            except redis.RedisError as exc:  # Redis restarting: try again each second
                print(f"lease keeper: renewal failed, retrying: {exc}", file=sys.stderr)
                next_renewal = now + 1.0
        if stdin_closed(timeout=min(1.0, max(0.0, next_renewal - time.monotonic()))):
            break
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.stdin.readline())))
