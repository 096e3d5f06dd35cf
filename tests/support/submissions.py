"""A stream of task submissions to the API while Redis fails over, and what became of them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx


class Stream:
    """``add`` submissions to the API, one after another, each answer noted with its time."""

    def __init__(self, api_url: str, **client_options: Any) -> None:
        self.api_url = api_url
        self.acked: list[tuple[float, str]] = []
        self.refused: list[float] = []  # 503 (broker unavailable) or no answer: not acked
        self.unexpected: list[str] = []
        self._client = httpx.Client(timeout=10, **client_options)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                r = self._client.post(f"{self.api_url}/api/v1/tasks/add", json={"x": 1, "y": 2})
            except httpx.HTTPError:
                self.refused.append(time.monotonic())
                continue
            if r.status_code == 202:
                self.acked.append((time.monotonic(), r.json()["task_id"]))
            elif r.status_code == 503:
                self.refused.append(time.monotonic())
            else:
                self.unexpected.append(f"{r.status_code} {r.text}")
            time.sleep(0.02)

    def acked_since(self, moment: float) -> bool:
        return bool(self.acked) and self.acked[-1][0] > moment

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._client.close()


@dataclass(frozen=True)
class Failover:
    """When the master was killed (monotonic and wall clock), and the new one named."""

    killed_at: float
    killed_wall: float
    promoted_after: float


# Replication is asynchronous: Redis may answer a write before the replica has it, so a task
# acknowledged in the last moments before the master dies can be lost with it (README,
# "Acknowledged tasks and asynchronous replication"). Any other loss is a defect.
REPLICATION_WINDOW_SECONDS = 0.5


def outcome(
    stream: Stream, failover: Failover, final_state: Callable[[str], dict[str, Any]]
) -> str:
    """Every acknowledged task waited for (``final_state``: its state once ready; raises
    AssertionError if it never is); the counts and times as one line. Raises AssertionError if
    an acknowledged task was lost other than in the replication window around the kill."""

    def settled(task_id: str) -> dict[str, Any] | None:
        try:
            return final_state(task_id)
        except AssertionError:  # never ready: lost
            return None

    done = {task_id: settled(task_id) for _, task_id in stream.acked}
    lost = [task_id for task_id, state in done.items() if not state or state["state"] != "SUCCESS"]
    acked_at = {task_id: t for t, task_id in stream.acked}
    in_window = [
        task_id
        for task_id in lost
        if abs(acked_at[task_id] - failover.killed_at) <= REPLICATION_WINDOW_SECONDS
    ]
    # Resumed: the first 202 after the last refusal (requests in flight at the kill may still
    # have been answered by the old master), and the first of those tasks done.
    outage_end = max([failover.killed_at, *stream.refused])
    resumed = [(t, task_id) for t, task_id in stream.acked if t > outage_end]
    api_resumed = resumed[0][0] - failover.killed_at
    finished = [state for _, task_id in resumed if (state := done[task_id])]
    worker_resumed = (
        min(datetime.fromisoformat(state["date_done"]).timestamp() for state in finished)
        - failover.killed_wall
    )
    line = (
        f"submitted {len(stream.acked) + len(stream.refused)}, acknowledged (202) "
        f"{len(stream.acked)}, refused (503) {len(stream.refused)}, completed "
        f"{len(done) - len(lost)}, lost {len(lost)} ({len(in_window)} acknowledged within "
        f"{REPLICATION_WINDOW_SECONDS} s of the kill); after the kill: a new master in "
        f"{failover.promoted_after:.1f} s, the API took tasks again in {api_resumed:.1f} s, the "
        f"worker ran them again in {worker_resumed:.1f} s"
    )
    assert not stream.unexpected, stream.unexpected
    outside = [task_id for task_id in lost if task_id not in in_window]
    assert not outside, f"{line}: lost outside the replication window {outside}"
    return line
