"""Leases at the shipped defaults: a live worker's long task or far countdown is never handed to
another worker, whatever its pool, even when the task blocks the worker's main process (solo).

Each pool gets its own Redis database, the worker under test and an idle second worker that
would take any copy handed back by a run-out lease. Tasks and countdowns last more than two
leases (a lease not renewed would run out halfway through, and the copy would run twice). The
three pools run side by side, so the test takes one task's time.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from internal.infra.redis import ORDER_ATTEMPTS_KEY
from internal.tasks.celery import tasks as app_tasks
from tests.conftest import LaunchFn, node_name, start_workers
from tests.support.processes import Redis, wait_until

LEASE = Settings().lease_seconds
LONG = 2 * LEASE + 5  # seconds of work, and of countdown
POOLS = {"prefork": 5, "threads": 6, "solo": 7}  # pool -> Redis database


def held(store: redis.Redis, n: int) -> Callable[[], bool]:
    """A check: the database holds ``n`` unacked messages."""
    return lambda: store.hlen("unacked") == n


def test_long_tasks_and_far_countdowns_run_once_on_every_pool(
    launch: LaunchFn, redis_server: Redis
) -> None:
    assert Settings().broker_transport == "leased"
    urls = {pool: redis_server.url(db) for pool, db in POOLS.items()}
    for url in urls.values():
        redis.Redis.from_url(url).flushdb()
    start_workers(launch, [
        (node_name(pool), ("-l", "info", "-Q", "default", "--pool", pool, "--concurrency", "2"),
         {"env": {"REDIS_URL": url}})
        for pool, url in urls.items()
    ])  # fmt: skip
    runs = {}
    for pool, url in urls.items():
        client = build_celery_client(Settings(redis_url=url))
        eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=LONG)
        late = client.submit(
            task_name=app_tasks.record_order.name, kwargs={"order_id": "eta"}, eta=eta
        )
        long = client.submit(
            task_name=app_tasks.record_order.name, kwargs={"order_id": "long", "work_seconds": LONG}
        )
        runs[pool] = (client, url, long, late, eta)
    for pool, url in urls.items():
        store = redis.Redis.from_url(url)
        wait_until(held(store, 2), timeout=30, what=f"{pool} holding both")
    # Only now the spares: any copy one ever gets was handed back by a run-out lease.
    start_workers(launch, [
        (node_name(f"{pool}-spare"), ("-l", "info", "-Q", "default", "--concurrency", "1"),
         {"env": {"REDIS_URL": url}})
        for pool, url in urls.items()
    ])  # fmt: skip

    time.sleep(LONG)
    for pool, (client, url, long, late, eta) in runs.items():
        long_result = long.get(timeout=60)
        late.get(timeout=60)
        store = redis.Redis.from_url(url, decode_responses=True)
        attempts = store.hgetall(ORDER_ATTEMPTS_KEY)
        ran_at = client.status(late.id).date_done
        assert ran_at is not None
        delay = (ran_at.replace(tzinfo=dt.UTC) - eta).total_seconds()
        print(
            f"\n{pool}: {LONG:.0f} s task and {LONG:.0f} s countdown with a {LEASE:.0f} s lease: "
            f"attempts {attempts}, countdown task done {delay:+.1f} s from its ETA"
        )
        assert attempts == {"long": "1", "eta": "1"}, pool
        assert long_result["attempts"] == 1
        # On time: solo runs it once the long task frees its only process.
        assert -1 < delay < (10 if pool == "solo" else 3), pool
        wait_until(held(store, 0), timeout=10, what="acks")
