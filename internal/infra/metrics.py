"""The app's own Prometheus gauges, served with Flower's ``/metrics`` (one Flower per stack, so
each series once; behind Flower's auth in prod): queue lengths and the oldest message's age
over every declared queue, unacknowledged messages, beat's last tick, dead letters held, and
the broker's memory against its limit (no exporter image can be used here)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from internal.config.setting import Settings
from internal.infra.celery import TASKS, dead_letter_box
from internal.infra.redis import HEARTBEAT_KEY, get_redis
from pkg.queue_metrics import QueueCollector
from pkg.redis_sentinel import sync_client


def register_app_metrics(settings: Settings) -> None:
    broker = sync_client(
        settings.broker_url,
        settings.sentinel_kwargs(),
        socket_timeout=settings.readiness_timeout_seconds,
        **settings.redis_tls(settings.broker_url),
    )
    letters = dead_letter_box(settings)

    def beat_last_tick() -> float:
        stamp = get_redis().get(HEARTBEAT_KEY)
        return float(stamp) if stamp else 0.0

    REGISTRY.register(
        QueueCollector(
            lambda: broker,
            TASKS.queues,
            readings=[
                (
                    "app_beat_last_tick_timestamp_seconds",
                    "When beat last sent its heartbeat task (0: never)",
                    beat_last_tick,
                ),
                (
                    "app_dead_letters",
                    "Tasks that failed for good, kept for replay",
                    lambda: float(get_redis().zcard(letters.index)),
                ),
                # The broker's memory against its limit (0: none): at the limit, with
                # noeviction, Redis refuses writes and publishes fail.
                (
                    "redis_memory_used_bytes",
                    "Memory the broker's Redis uses",
                    lambda: float(broker.info("memory")["used_memory"]),
                ),
                (
                    "redis_memory_max_bytes",
                    "The broker's maxmemory (0: no limit)",
                    lambda: float(broker.info("memory")["maxmemory"]),
                ),
            ],
        )
    )
