"""A Sentinel-managed Redis (``sentinel://`` URL): every client through a real failover.

Real redis-server processes (a master, a replica, three sentinels), the worker, beat and the
API as launched processes, and the test's own CeleryClient. The master is killed while the API
takes a stream of submissions: the stack must resume by itself, and every task the API
acknowledged (202) must complete. The counts and the time to resume are printed (``-s``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from tests.conftest import LaunchFn, node_name, start_worker
from tests.integration.test_api import start_api, submit, wait_ready
from tests.support.processes import healthcheck, wait_until
from tests.support.sentinel import SentinelGroup


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    started = SentinelGroup(tmp_path / "sentinel")
    yield started
    started.stop()


class Stream:
    """Submissions to the API, one after another, each answer noted with its time."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.acked: list[tuple[float, str]] = []
        self.refused: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                r = http.post(f"{self.api_url}/api/v1/tasks/add", json={"x": 1, "y": 2})
                if r.status_code == 202:
                    self.acked.append((time.monotonic(), r.json()["task_id"]))
                else:
                    assert r.status_code == 503, r.text  # broker unavailable, said so
                    self.refused.append(time.monotonic())
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_every_client_follows_a_failover(
    group: SentinelGroup, launch: LaunchFn, tmp_path: Path
) -> None:
    env = {"REDIS_URL": group.url(), "HEARTBEAT_INTERVAL_SECONDS": "1",
           "BEAT_SCHEDULE_DIR": str(tmp_path / "beat")}  # fmt: skip
    start_worker(launch, node_name("sentinel"), "-l", "info", "--concurrency", "2", env=env)
    launch("run_celery_beat.py", env=env)
    api_url = start_api(launch, env)
    client = build_celery_client(Settings(redis_url=group.url()))

    # Before: the API's fast path, Celery's own publish, the backend, beat: all on the master.
    assert wait_ready(api_url, submit(api_url, "add", {"x": 2, "y": 3}))["result"] == 5
    assert client.submit(task_name="tasks.add", args=(4, 5)).get(timeout=30) == 9
    wait_until(lambda: healthcheck("beat", env) == 0, timeout=30, what="beat's heartbeat")

    stream = Stream(api_url)
    time.sleep(2)
    killed_at, killed_wall = time.monotonic(), time.time()
    old_master = group.master.port
    group.master.proc.kill()
    wait_until(lambda: group.master_port() != old_master, timeout=30, what="a failover")
    promoted_after = time.monotonic() - killed_at
    wait_until(
        lambda: any(t > killed_at for t, _ in stream.acked) and stream.acked[-1][0] > killed_at,
        timeout=60,
        what="the API to take submissions again",
    )
    time.sleep(2)
    stream.stop()

    acked_after = [t for t, _ in stream.acked if t > killed_at]
    resumed_after = min(acked_after) - killed_at
    done = {task_id: wait_ready(api_url, task_id, timeout=60) for _, task_id in stream.acked}
    lost = [task_id for task_id, state in done.items() if state["state"] != "SUCCESS"]
    ran_after = min(
        datetime.fromisoformat(state["date_done"]).timestamp() - killed_wall
        for state in done.values()
        if datetime.fromisoformat(state["date_done"]).timestamp() > killed_wall
    )
    print(
        f"\nsentinel failover: submitted {len(stream.acked) + len(stream.refused)}, "
        f"acknowledged {len(stream.acked)}, refused (503) {len(stream.refused)}, "
        f"completed {len(done) - len(lost)}, lost {len(lost)}; after the kill: a new master in "
        f"{promoted_after:.1f} s, the API took tasks again in {resumed_after:.1f} s, the worker "
        f"ran them again in {ran_after:.1f} s"
    )
    assert not lost, lost
    assert resumed_after < 15 and ran_after < 20

    # After: every client on the new master, with nothing restarted.
    assert group.master_port() == group.replica.port
    assert client.submit(task_name="tasks.add", args=(6, 7)).get(timeout=30) == 13
    assert wait_ready(api_url, submit(api_url, "add", {"x": 1, "y": 1}))["result"] == 2
    wait_until(lambda: healthcheck("beat", env) == 0, timeout=30, what="beat on the new master")
    r = httpx.get(f"{api_url}/readyz")
    assert r.status_code == 200, r.text
