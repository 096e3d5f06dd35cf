"""Prometheus metrics of what waits in Redis, read at scrape time: what neither Flower (its
metrics come from worker events: tasks, run times, workers) nor a well-kept exporter gives
right for this broker.

- ``celery_queue_length{queue}``: messages waiting, over every list of the queue. kombu keeps
  a queue with priorities as several lists (``name``, ``name\\x06\\x163``, ...);
  celery-exporter counts only the first (its #272).
- ``celery_queue_oldest_message_age_seconds{queue}``: how long the next message to be taken
  has waited, from the publish time every publisher stamps in its headers
  (``stamp_publish_time``); 0 for an empty queue.
- ``celery_messages_unacked``: messages delivered to workers and not yet acknowledged
  (running, prefetched, waiting for an ETA).
- Gauges of the caller's own (``readings``): e.g. beat's last tick, dead letters held.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from celery import signals
from kombu.transport.redis import PRIORITY_STEPS
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pkg.async_publisher import priority_list

log = logging.getLogger(__name__)
PUBLISHED_AT = "published_at"  # header: publish time, seconds since the epoch

Reading = tuple[str, str, Callable[[], float]]  # a gauge: name, help, how to read its value


def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers[PUBLISHED_AT] = round(time.time(), 3)  # a retry is published again: now


def stamp_publish_time() -> None:
    """Have every task this process publishes carry its publish time in its headers (Celery's
    own publish and the API's publisher both fire ``before_task_publish`` before they
    serialize). The worker sees it as ``task.request.published_at``."""
    signals.before_task_publish.connect(_stamp, weak=False, dispatch_uid="stamp_publish_time")


def queue_lists(queue: str) -> list[str]:
    """The Redis lists of a queue, the plain one (priority 0) first."""
    return [priority_list(queue, step) for step in PRIORITY_STEPS]


class QueueCollector(Collector):
    def __init__(
        self,
        client: Callable[[], redis.Redis],
        queues: Callable[[], Sequence[str]],
        *,
        unacked_key: str = "unacked",
        readings: Iterable[Reading] = (),
    ) -> None:
        self.client = client
        self.queues = queues
        self.unacked_key = unacked_key
        self.readings = list(readings)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """The series' names without reading Redis (registering must not need the broker:
        a service starts before Redis does)."""
        yield from self._families()
        yield GaugeMetricFamily("celery_messages_unacked", "", value=0)
        for name, help_text, _ in self.readings:
            yield GaugeMetricFamily(name, help_text, value=0)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        length = GaugeMetricFamily(
            "celery_queue_length", "Messages waiting in the queue (all its lists)", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "celery_queue_oldest_message_age_seconds",
            "How long the next message to be taken from the queue has waited",
            labels=["queue"],
        )
        return length, age

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Read at scrape time; with Redis unreachable, no series (the scrape still answers,
        and Prometheus sees them absent)."""
        queues = list(self.queues())
        try:
            store = self.client()
            pipe = store.pipeline(transaction=False)
            for queue in queues:
                for name in queue_lists(queue):
                    pipe.llen(name)
                    pipe.lindex(name, -1)  # kombu pops from the right: the next to be taken
            pipe.hlen(self.unacked_key)
            replies = pipe.execute()
            readings = [(name, help_text, read()) for name, help_text, read in self.readings]
        except redis.RedisError as exc:
            log.warning("queue metrics: Redis unavailable (%s)", exc)
            return
        now = time.time()
        length, age = self._families()
        at = 0
        for queue in queues:
            waiting, oldest = 0, None
            for _ in queue_lists(queue):
                count, tail = replies[at], replies[at + 1]
                at += 2
                waiting += int(count)
                published = _published_at(tail)
                if published is not None:
                    oldest = published if oldest is None else min(oldest, published)
            length.add_metric([queue], waiting)
            age.add_metric([queue], max(0.0, now - oldest) if oldest is not None else 0.0)
        yield length
        yield age
        yield GaugeMetricFamily(
            "celery_messages_unacked",
            "Messages delivered to workers and not acknowledged yet",
            value=int(replies[at]),
        )
        for name, help_text, value in readings:
            yield GaugeMetricFamily(name, help_text, value=value)


def _published_at(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)["headers"].get(PUBLISHED_AT)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
