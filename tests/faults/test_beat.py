"""Beat: one instance at a time whatever is started; a restart neither double-fires nor skips."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import signal
import time

from tests.conftest import LaunchFn
from tests.faults.conftest import Isolated
from tests.support.processes import Launched, wait_until

SENT = re.compile(
    r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] "
    r"Scheduler: Sending due task heartbeat"
)


def sends(*beats: Launched) -> list[float]:
    stamps = []
    for beat in beats:
        for match in SENT.finditer(beat.output):
            when = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            stamps.append(when.timestamp())
    return sorted(stamps)


def test_only_one_beat_runs_and_a_standby_takes_over(launch: LaunchFn, isolated: Isolated) -> None:
    env = {
        "REDIS_URL": isolated.url,
        "HEARTBEAT_INTERVAL_SECONDS": "1",
        "BEAT_LOCK_TTL_SECONDS": "3",
    }
    first = launch("run_celery_beat.py", env=env)
    first.wait_for_output("Sending due task heartbeat", timeout=30)
    second = launch("run_celery_beat.py", env=env)
    second.wait_for_output("held by another instance: standing by", timeout=30)
    time.sleep(3)
    assert sends(first) and not sends(second), "two beats fired"
    print(f"\nbeat lock: active fired {len(sends(first))} times, standby 0")

    first.proc.send_signal(signal.SIGKILL)  # dies without releasing: the lock must expire
    killed = time.monotonic()
    second.wait_for_output("Sending due task heartbeat", timeout=30)
    print(f"standby took over {time.monotonic() - killed:.1f} s after the active beat was killed")


def test_restart_neither_double_fires_nor_skips(launch: LaunchFn, isolated: Isolated) -> None:
    interval = 2.0
    env = {"REDIS_URL": isolated.url, "HEARTBEAT_INTERVAL_SECONDS": str(interval)}
    # Wait for sends, not a fixed time: beat's start-up alone takes 2.5 to 3.5 s here.
    before = launch("run_celery_beat.py", env=env)
    wait_until(lambda: len(sends(before)) >= 3, timeout=30, what="three sends before")
    assert before.stop(signal.SIGTERM) == 0
    stopped = time.time()
    after = launch("run_celery_beat.py", env=env)
    wait_until(lambda: len(sends(after)) >= 3, timeout=30, what="three sends after")
    downtime = sends(after)[0] - stopped  # stop to the first send of the new beat
    stamps = sends(before, after)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    print(f"\nbeat restart: {len(stamps)} sends, gaps {[round(g, 1) for g in gaps]} s")
    assert len(stamps) >= 5
    assert min(gaps) > interval * 0.5, "a restart fired the entry twice"
    assert max(gaps) < interval + downtime + 1, "a restart skipped more than one period"
