"""The throughput work (bench/) against a real Redis: each shortcut writes exactly what Celery and
kombu would, so workers and tools cannot tell the difference."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from celery import signals
from kombu.connection import Connection
from kombu.utils.json import loads as _untyped_loads

from internal.config.setting import Settings
from internal.infra.celery import TASKS, build_celery_client
from internal.tasks.celery import queues
from internal.tasks.celery import tasks as app_tasks
from pkg.async_publisher import AsyncTaskPublisher
from pkg.celery_task import LEASED_TRANSPORT
from pkg.queue_metrics import PUBLISHED_AT
from tests.support.processes import Redis


def queued(url: str, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis.Redis.from_url(url).lrange(queue, 0, -1)]


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """A message with its body decoded (kombu's decoder: type tags become objects again) and
    the delivery tag left out (a fresh uuid for every message); every other value stays."""
    out = {**message, "properties": dict(message["properties"])}
    out["properties"].pop("delivery_tag")
    # The publish time differs by construction: it must be there and recent, not equal.
    out["headers"] = dict(message["headers"])
    published_at = out["headers"].pop(PUBLISHED_AT)
    assert isinstance(published_at, float) and abs(time.time() - published_at) < 30
    out["body"] = kombu_loads(base64.b64decode(message["body"]))
    return out


kombu_loads: Any = _untyped_loads  # kombu's JSON decoder (type tags back to objects)
PRIORITIZED = "tests.prioritized"
PARITY_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "add": (app_tasks.add.name, {"x": 1, "y": 2}),
    "routed": (app_tasks.long_report.name, {"steps": 3, "step_seconds": 0.5}),
    "priority": (PRIORITIZED, {"x": 1}),
    "typed": (app_tasks.add.name, {"when": dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC),
                           "id": uuid.UUID(int=7), "amount": Decimal("1.10")}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_async_publisher_writes_what_send_task_writes_value_for_value(
    redis_server: Redis, case: str
) -> None:
    """Regression (issue 11): the parity test compared key names only, so ignore_result false
    (Celery: null), an empty reply_to, a JSON kwargsrepr, lost type tags and a dropped route
    priority all passed. Every header and property value is compared now, over each queue and
    route option the app declares (plus a priority route)."""
    url = redis_server.url(11)
    store: redis.Redis = redis.Redis.from_url(url)
    store.flushdb()
    client = build_celery_client(Settings(redis_url=url))
    client.app.conf.task_routes = {
        **TASKS.routes(),
        PRIORITIZED: {"queue": "default", "priority": 5},
    }
    name, kwargs = PARITY_CASES[case]
    # Finalized (as the publisher leaves it): send_task then stamps a registered task's own
    # options (its time limits) in the message, and the publisher must too.
    assert client.app.tasks
    client.submit(task_name=name, kwargs=kwargs, task_id=f"{case}-id")

    async def publish() -> None:
        async with aioredis.Redis.from_url(url) as conn:
            publisher = AsyncTaskPublisher(client.app, conn, timeout=5)
            await publisher.publish(name, kwargs, task_id=f"{case}-id")

    asyncio.run(publish())
    keys: list[bytes] = store.keys("*")  # type: ignore[assignment]
    (key,) = [k for k in keys if not k.startswith(b"_kombu")]
    by_publisher, by_celery = (json.loads(m) for m in store.lrange(key, 0, -1))  # newest first
    assert comparable(by_publisher) == comparable(by_celery)
    if case == "priority":
        assert key == b"default\x06\x163"  # kombu's list for priority step 3


def test_publish_signals_fire_for_the_fast_path(redis_server: Redis) -> None:
    """before/after_task_publish receivers (tracing, auditing) see the API's publishes."""
    url = redis_server.url(11)
    store = redis.Redis.from_url(url)
    store.flushdb()
    client = build_celery_client(Settings(redis_url=url))
    seen: list[tuple[str, str, int]] = []

    def before(sender: str, headers: dict[str, Any], **_: Any) -> None:
        seen.append(("before", headers["id"], store.llen("default")))

    def after(sender: str, routing_key: str, headers: dict[str, Any], **_: Any) -> None:
        # The headers too, as send_task gives them (a tracing receiver reads the id there).
        seen.append(("after", f"{routing_key} {headers['id']}", store.llen("default")))

    async def publish() -> None:
        async with aioredis.Redis.from_url(url) as conn:
            publisher = AsyncTaskPublisher(client.app, conn, timeout=5)
            await publisher.publish(app_tasks.add.name, {"x": 1, "y": 2}, task_id="signalled")

    signals.before_task_publish.connect(before, weak=False)
    signals.after_task_publish.connect(after, weak=False)
    try:
        asyncio.run(publish())
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)
    assert seen == [("before", "signalled", 0), ("after", "default signalled", 1)]


def test_the_fast_path_refuses_a_global_keyprefix(redis_server: Redis) -> None:
    client = build_celery_client(Settings(redis_url=redis_server.url(11)))
    client.app.conf.broker_transport_options = {"global_keyprefix": "tenant-a:"}
    with pytest.raises(ValueError, match="global_keyprefix"):
        AsyncTaskPublisher(client.app, aioredis.Redis(), timeout=5)


def test_async_publisher_follows_the_routes(redis_server: Redis) -> None:
    url = redis_server.url(11)
    redis.Redis.from_url(url).flushdb()
    client = build_celery_client(Settings(redis_url=url))

    async def publish() -> None:
        async with aioredis.Redis.from_url(url) as conn:
            publisher = AsyncTaskPublisher(client.app, conn, timeout=5)
            await publisher.publish(app_tasks.long_report.name, {"steps": 1}, task_id="slow-one")

    asyncio.run(publish())
    (message,) = queued(url, queues.SLOW_QUEUE)
    assert message["properties"]["delivery_info"]["routing_key"] == queues.SLOW_QUEUE


def by_size(name: str, args: Any, kwargs: dict[str, Any], options: Any, task: Any = None) -> Any:
    """A route function that reads the arguments: big sums go to the slow queue."""
    if name == app_tasks.add.name and kwargs.get("x", 0) > 100:
        return {"queue": queues.SLOW_QUEUE}
    return None


def test_a_route_that_reads_the_arguments_is_asked_on_every_publish(redis_server: Redis) -> None:
    """Regression (issue 11): routes were cached per task name, so a route function that
    depends on the arguments sent every later message where the first one went."""
    url = redis_server.url(11)
    redis.Redis.from_url(url).flushdb()
    client = build_celery_client(Settings(redis_url=url))
    client.app.conf.task_routes = (by_size, TASKS.routes())

    async def publish() -> None:
        async with aioredis.Redis.from_url(url) as conn:
            publisher = AsyncTaskPublisher(client.app, conn, timeout=5)
            for x in (1, 500, 2):
                await publisher.publish(app_tasks.add.name, {"x": x, "y": 0}, task_id=f"x{x}")
            client.submit(task_name=app_tasks.add.name, kwargs={"x": 500, "y": 0}, task_id="sent")

    asyncio.run(publish())
    by_queue = {q: [m["headers"]["id"] for m in queued(url, q)][::-1] for q in TASKS.queues()}
    assert by_queue == {"default": ["x1", "x2"], "slow": ["x500", "sent"]}


def test_sending_does_not_subscribe_to_the_result(redis_server: Redis) -> None:
    url = redis_server.url(12)
    client = build_celery_client(Settings(redis_url=url))
    sent = client.submit(task_name=app_tasks.add.name, kwargs={"x": 1, "y": 2})
    channel = client.result_key(sent.id)
    assert redis.Redis.from_url(url).pubsub_numsub(channel) == [(channel.encode(), 0)]


def test_submit_many_publishes_every_task_in_order(redis_server: Redis) -> None:
    url = redis_server.url(13)
    redis.Redis.from_url(url).flushdb()
    client = build_celery_client(Settings(redis_url=url))
    ids = client.submit_many(
        task_name=app_tasks.add.name, kwargs=[{"x": i, "y": 0} for i in range(25)]
    )
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
