"""Redis Sentinel: one URL for a Sentinel-managed Redis, and clients that follow its master.

The URL names every sentinel, the master group and the database::

    sentinel://[user[:password]@]host1:26379,host2:26379,host3:26379/<master name>[/<db>]

The user and password are the Redis master's (an ACL user); the sentinels' own password, if
they have one, goes in ``sentinel_kwargs``. Each library takes it in its own form: kombu and
Celery want one ``sentinel://host:port/db`` per sentinel joined with ``;`` and the master name
as the ``master_name`` transport option (``kombu_url``, ``transport_options``); redis-py has
no URL form for Sentinel at all (``sync_client``, ``async_client`` build clients for either
kind of URL, so callers need not care which one they were given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.sentinel import Sentinel

SCHEME = "sentinel"
DEFAULT_PORT = 26379
EXAMPLE = "sentinel://host1:26379,host2:26379,host3:26379/mymaster/0"


def is_sentinel(url: str) -> bool:
    return url.startswith(f"{SCHEME}://")


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """Raises ValueError saying what is wrong (never quoting the password)."""
        parts = urlsplit(url)
        if parts.scheme != SCHEME:
            raise ValueError(f"not a {SCHEME}:// URL")
        if ";" in url:
            raise ValueError(f"list the sentinels comma-separated in one URL: {EXAMPLE}")
        credentials, _, hosts = parts.netloc.rpartition("@")
        username, _, password = credentials.partition(":")
        sentinels = tuple(_host_port(item) for item in hosts.split(","))
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2:
            raise ValueError(f"name the master group, then optionally the database: {EXAMPLE}")
        if len(path) == 2 and not path[1].isdigit():
            raise ValueError(f"the database must be a number, not {path[1]!r}")
        return cls(
            sentinels=sentinels,
            master_name=unquote(path[0]),
            db=int(path[1]) if len(path) == 2 else 0,
            username=unquote(username) or None,
            password=unquote(password) if ":" in credentials else None,
        )

    def kombu_url(self) -> str:
        """kombu's and Celery's form (credentials on the first, which they read them from)."""
        credentials = ""
        if self.username or self.password is not None:
            credentials = quote(self.username or "", safe="")
            if self.password is not None:
                credentials += ":" + quote(self.password, safe="")
            credentials += "@"
        return ";".join(
            f"{SCHEME}://{credentials if i == 0 else ''}{_netloc(host, port)}/{self.db}"
            for i, (host, port) in enumerate(self.sentinels)
        )

    def transport_options(self, sentinel_kwargs: dict[str, Any]) -> dict[str, Any]:
        """kombu's transport options (and Celery's result backend's) for this master."""
        return {"master_name": self.master_name, "sentinel_kwargs": dict(sentinel_kwargs)}

    def master_kwargs(self) -> dict[str, Any]:
        return {"db": self.db, "username": self.username, "password": self.password}


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    if not colon or "]" in port:  # no port (an IPv6 address in brackets has colons inside)
        host, port = item, str(DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"each sentinel is host:port, not {item!r}: {EXAMPLE}")
    return host, int(port)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def sync_client(url: str, sentinel_kwargs: dict[str, Any], **kwargs: Any) -> redis.Redis:
    """A client of ``url``: ``redis.Redis.from_url`` for ``redis://``/``rediss://``, else the
    Sentinel group's master (a new master after a failover is found on reconnect)."""
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **kwargs)
    target = SentinelUrl.parse(url)
    # redis-py's Sentinel classes carry no type hints.
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(target.master_name, **target.master_kwargs())  # type: ignore[no-untyped-call]
    return client


class BlockingSentinelPool(AsyncSentinelPool, aioredis.BlockingConnectionPool):
    """A Sentinel master's pool that, like ``BlockingConnectionPool``, makes a caller wait
    (up to ``timeout``) for one of its ``max_connections`` instead of failing."""


def async_client(
    url: str, sentinel_kwargs: dict[str, Any], *, max_connections: int, timeout: float,
    **kwargs: Any,
) -> aioredis.Redis:  # fmt: skip
    """An asyncio client of ``url`` whose pool holds at most ``max_connections``."""
    if not is_sentinel(url):
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, **kwargs
        )
        return aioredis.Redis(connection_pool=pool)
    target = SentinelUrl.parse(url)
    sentinel = AsyncSentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        target.master_name,
        connection_pool_class=BlockingSentinelPool,
        max_connections=max_connections,
        timeout=timeout,
        **target.master_kwargs(),
    )
    return client
