"""The throughput work (bench/) against a real Redis: each shortcut writes exactly what Celery and
kombu would, so workers and tools cannot tell the difference."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import redis
import redis.asyncio as aioredis
from kombu.connection import Connection

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.tasks.celery import queues
from pkg.async_publisher import AsyncTaskPublisher
from pkg.celery_task import LEASED_TRANSPORT
from tests.support.processes import Redis


def queued(url: str, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis.Redis.from_url(url).lrange(queue, 0, -1)]


def shape(message: dict[str, Any]) -> dict[str, Any]:
    """What must match between two messages for the same task (ids and tags differ)."""
    body = json.loads(base64.b64decode(message["body"]))
    headers = message["headers"]
    return {
        "keys": sorted(message),
        "content": (message["content-type"], message["content-encoding"]),
        "properties": sorted(message["properties"]),
        "delivery": message["properties"]["delivery_info"],
        "mode": message["properties"]["delivery_mode"],
        "headers": sorted(headers),
        "task": (headers["task"], headers["id"] == headers["root_id"], headers["retries"]),
        "body": body,
    }


def test_async_publisher_writes_what_celery_writes(redis_server: Redis) -> None:
    url = redis_server.url(11)
    redis.Redis.from_url(url).flushdb()
    client = build_celery_client(Settings(redis_url=url))
    client.submit(task_name=queues.ADD, kwargs={"x": 1, "y": 2}, task_id="by-celery")

    async def publish() -> None:
        async with aioredis.Redis.from_url(url) as conn:
            publisher = AsyncTaskPublisher(client.app, conn, timeout=5)
            await publisher.publish(queues.ADD, {"x": 1, "y": 2}, task_id="by-publisher")

    asyncio.run(publish())
    by_publisher, by_celery = queued(url, queues.DEFAULT_QUEUE)  # LPUSH: newest first
    assert by_celery["headers"]["id"] == "by-celery"
    assert shape(by_publisher) == shape(by_celery)


def test_async_publisher_follows_the_routes(redis_server: Redis) -> None:
    url = redis_server.url(11)
    redis.Redis.from_url(url).flushdb()
    client = build_celery_client(Settings(redis_url=url))

    async def publish() -> None:
        async with aioredis.Redis.from_url(url) as conn:
            publisher = AsyncTaskPublisher(client.app, conn, timeout=5)
            await publisher.publish(queues.LONG_REPORT, {"steps": 1}, task_id="slow-one")

    asyncio.run(publish())
    (message,) = queued(url, queues.SLOW_QUEUE)
    assert message["properties"]["delivery_info"]["routing_key"] == queues.SLOW_QUEUE


def test_sending_does_not_subscribe_to_the_result(redis_server: Redis) -> None:
    url = redis_server.url(12)
    client = build_celery_client(Settings(redis_url=url))
    sent = client.submit(task_name=queues.ADD, kwargs={"x": 1, "y": 2})
    channel = client.result_key(sent.id)
    assert redis.Redis.from_url(url).pubsub_numsub(channel) == [(channel.encode(), 0)]


def test_submit_many_publishes_every_task_in_order(redis_server: Redis) -> None:
    url = redis_server.url(13)
    redis.Redis.from_url(url).flushdb()
    client = build_celery_client(Settings(redis_url=url))
    ids = client.submit_many(task_name=queues.ADD, kwargs=[{"x": i, "y": 0} for i in range(25)])
    assert len(set(ids)) == 25
    messages = queued(url, queues.DEFAULT_QUEUE)[::-1]
    assert [m["headers"]["id"] for m in messages] == ids


def test_late_ack_bookkeeping_is_kept_and_cleared(redis_server: Redis) -> None:
    url = redis_server.url(14)
    store = redis.Redis.from_url(url)
    store.flushdb()
    with Connection(url, transport=LEASED_TRANSPORT) as conn:  # type: ignore[no-untyped-call]
        queue = conn.SimpleQueue("ack-check")
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        # Reserved, not acked: the unacked hash and index hold it (redelivered if we die), and
        # this process's owner set names it (its keeper renews the lease).
        assert store.hlen("unacked") == 1 and store.zcard("unacked_index") == 1
        (owner,) = store.keys("unacked_owner.*")
        assert store.smembers(owner) == {message.delivery_tag.encode()}
        message.ack()
        assert store.hlen("unacked") == 0 and store.zcard("unacked_index") == 0
        assert not store.exists(owner)
        channel = queue.channel
        assert channel._create_client() is channel._create_client()  # one client per channel
        queue.close()
