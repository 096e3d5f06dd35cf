"""A Sentinel-managed Redis (``sentinel://`` URL): every client through a real failover.

Real redis-server processes (a master, a replica, three sentinels), the worker, beat and the
API as launched processes, and the test's own CeleryClient. The master is killed while the API
takes a stream of submissions: the stack must resume by itself, and every task the API
acknowledged (202) must complete, but for one acknowledged in the instant the master died
(replication is asynchronous: README, "Acknowledged tasks and asynchronous replication"). The
counts and the times to resume are printed (``-s``);
``bench/sentinel_failover.py`` does the same on the compose prod stack.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from tests.conftest import LaunchFn, node_name
from tests.integration.test_api import start_api, submit, wait_ready
from tests.support.processes import healthcheck, wait_until
from tests.support.sentinel import SentinelGroup
from tests.support.submissions import Failover, Stream, outcome


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    started = SentinelGroup(tmp_path / "sentinel")
    yield started
    started.stop()


def test_every_client_follows_a_failover(
    group: SentinelGroup, launch: LaunchFn, tmp_path: Path
) -> None:
    env = {"REDIS_URL": group.url(), "HEARTBEAT_INTERVAL_SECONDS": "1",
           "BEAT_SCHEDULE_DIR": str(tmp_path / "beat")}  # fmt: skip
    name = node_name("sentinel")  # the three start side by side
    worker = launch("run_celery_worker.py", "-n", name, "--without-mingle", "-l", "info", "-c", "2",
                    env=env)  # fmt: skip
    launch("run_celery_beat.py", env=env)
    api_url = start_api(launch, env)
    worker.wait_for_output(f"{name} ready.", timeout=60)
    client = build_celery_client(Settings(redis_url=group.url()))

    # Before: the API's fast path, Celery's own publish, the backend, beat: all on the master.
    assert wait_ready(api_url, submit(api_url, "add", {"x": 2, "y": 3}))["result"] == 5
    assert client.submit(task_name="tasks.add", args=(4, 5)).get(timeout=30) == 9
    wait_until(lambda: healthcheck("beat", env) == 0, timeout=30, what="beat's heartbeat")

    stream = Stream(api_url)
    time.sleep(1)
    killed_at, killed_wall = time.monotonic(), time.time()
    group.master.proc.kill()
    wait_until(lambda: group.master_port() == group.replica.port, timeout=30, what="a failover")
    failover = Failover(killed_at, killed_wall, time.monotonic() - killed_at)
    wait_until(lambda: stream.acked_since(killed_at), timeout=60, what="the API to take tasks")
    time.sleep(1)
    stream.stop()
    print("\nsentinel failover:", outcome(stream, failover, lambda t: wait_ready(api_url, t, 30)))

    # After: every client on the new master, with nothing restarted.
    assert client.submit(task_name="tasks.add", args=(6, 7)).get(timeout=30) == 13
    assert wait_ready(api_url, submit(api_url, "add", {"x": 1, "y": 1}))["result"] == 2
    wait_until(lambda: healthcheck("beat", env) == 0, timeout=30, what="beat on the new master")
    r = httpx.get(f"{api_url}/readyz")
    assert r.status_code == 200, r.text
