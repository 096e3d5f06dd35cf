"""The app's queue gauges (pkg/queue_metrics.py) over real messages in the suite's Redis, with
no worker taking them: lengths over every list of a queue, the oldest message's age from the
publish time every publisher stamps, unacknowledged messages and the caller's own gauges."""

from __future__ import annotations

import time
from functools import partial

import redis
from prometheus_client import CollectorRegistry, generate_latest

from internal.config.setting import Settings
from internal.infra.celery import TASKS, build_celery_client
from pkg.queue_metrics import QueueCollector
from tests.support.processes import free_port


def scrape(store: redis.Redis, **readings: float) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(
        QueueCollector(
            lambda: store,
            TASKS.queues,
            readings=[(name, name, partial(float, v)) for name, v in readings.items()],
        )
    )
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_lengths_count_every_list_and_age_comes_from_the_publish_time(
    settings: Settings, store: redis.Redis
) -> None:
    client = build_celery_client(settings)
    client.submit(task_name="tasks.add", kwargs={"x": 1, "y": 1})
    client.submit(task_name="tasks.add", kwargs={"x": 2, "y": 1}, priority=5)  # another list
    client.submit(task_name="tasks.long_report", kwargs={"steps": 1})
    time.sleep(1.2)
    store.lpush("default", '{"headers": {}}')  # a message without a publish time: counted
    store.hset("unacked", "tag", "{}")
    values = scrape(store, app_dead_letters=3)
    assert values['celery_queue_length{queue="default"}'] == 3
    assert values['celery_queue_length{queue="slow"}'] == 1
    assert 1.2 <= values['celery_queue_oldest_message_age_seconds{queue="default"}'] < 10
    assert 1.2 <= values['celery_queue_oldest_message_age_seconds{queue="slow"}'] < 10
    assert values["celery_messages_unacked"] == 1
    assert values["app_dead_letters"] == 3


def test_an_empty_queue_is_zero_long_and_zero_old(store: redis.Redis) -> None:
    values = scrape(store)
    assert values['celery_queue_length{queue="default"}'] == 0
    assert values['celery_queue_oldest_message_age_seconds{queue="default"}'] == 0


def test_registering_and_scraping_need_no_redis() -> None:
    """Regression: registering read Redis (prometheus_client calls collect() to learn the
    names of a collector without describe()), so Flower stopped at start when Redis was not
    up yet."""
    down = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    registry = CollectorRegistry()
    registry.register(QueueCollector(lambda: down, TASKS.queues))
    assert "celery_queue_length{" not in generate_latest(registry).decode()
