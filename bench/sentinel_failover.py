"""Sentinel failover on the compose prod stack (``compose.sentinel.yaml``), outside CI:
``uv run --no-project --with-requirements requirements/test.txt python -m bench.sentinel_failover``

The prod stack with a master, a replica and three sentinels, at the shipped settings. While a
client submits ``add`` tasks to the API one after another, the master's container is killed
(``docker kill``): the sentinels promote the replica, and every service must follow by itself.
Prints submitted, acknowledged (202), refused (503), completed and lost, and how long the new
master, the API and the worker each took; then brings the old master back and checks that
the sentinels made it a replica and that every service is still healthy. Exit 1 if an
acknowledged task was lost or a service did not come back. About three minutes (images cached).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from bench.common import container_redis
from tests.support.processes import free_port, wait_until
from tests.support.stack import Stack, copy_repo
from tests.support.stack_fixtures import FLOWER_PASSWORD, FLOWER_USER, write_secrets
from tests.support.submissions import Failover, Stream, outcome

COMPOSE_FILES = "compose.yaml:compose.sentinel.yaml"
SERVICES = ("api-prod", "worker-prod", "beat-prod", "flower-prod")


def master_host(sentinel: redis.Redis) -> str:
    host, _port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")  # type: ignore[no-untyped-call]
    return str(host)


def sentinel_events(stack: Stack) -> list[str]:
    """The failover's steps as a sentinel logged them (down, agreed down, switched)."""
    steps = ("+sdown master", "+odown", "+try-failover", "+elected-leader", "+switch-master")
    lines = stack.logs("sentinel-1-prod").splitlines()
    return [line.split("|", 1)[-1].strip() for line in lines if any(s in line for s in steps)]


def final_state(api: str, task_id: str) -> dict[str, object]:
    state = wait_until(
        lambda: (s := httpx.get(f"{api}/api/v1/tasks/{task_id}", params={"wait": 5},
                                timeout=10).json())["ready"] and s,
        timeout=120, what=task_id,
    )  # fmt: skip
    return dict(state)


def healthy(stack: Stack) -> set[str]:
    out = stack.compose("ps", "--format", "{{.Service}} {{.Health}}").stdout
    return {line.split()[0] for line in out.splitlines() if line.endswith(" healthy")}


def run(workdir: Path) -> int:
    tree = copy_repo(workdir / "repo")
    write_secrets(tree)
    api_port, flower_port = free_port(), free_port()
    stack = Stack(tree, profile="prod", env={
        "COMPOSE_FILE": COMPOSE_FILES, "API_PORT": str(api_port), "FLOWER_PORT": str(flower_port),
        "PROMETHEUS_PORT": str(free_port()),
    })  # fmt: skip
    api = f"http://127.0.0.1:{api_port}"
    try:
        stack.compose("build", timeout=1800)
        started = time.monotonic()
        stack.compose("up", "-d", "--wait", "--wait-timeout", "240", *SERVICES, timeout=400)
        print(f"prod stack with Sentinel: healthy in {time.monotonic() - started:.1f} s")
        sentinel = container_redis(stack, "sentinel-1-prod", 26379)
        assert master_host(sentinel) == "redis-prod"

        stream = Stream(api)
        time.sleep(5)
        (master,) = stack.container_ids("redis-prod")
        killed_at, killed_wall = time.monotonic(), time.time()
        stack.compose("kill", "redis-prod")
        wait_until(lambda: master_host(sentinel) == "redis-replica-prod", timeout=60,
                   interval=0.2, what="the sentinels to promote the replica")  # fmt: skip
        failover = Failover(killed_at, killed_wall, time.monotonic() - killed_at)
        wait_until(lambda: stream.acked_since(killed_at), timeout=120, what="the API again")
        time.sleep(5)
        stream.stop()
        print("failover:", outcome(stream, failover, lambda task_id: final_state(api, task_id)))
        print("what the sentinels saw:", *sentinel_events(stack), sep="\n  ")

        # The old master comes back as a replica of the new one; nothing was restarted.
        stack.compose("start", "redis-prod")
        old_master = container_redis(stack, "redis-prod")
        wait_until(lambda: old_master.info("replication")["role"] == "slave",
                   timeout=60, what="the old master to rejoin as a replica")  # fmt: skip
        wait_until(lambda: set(SERVICES) <= healthy(stack), timeout=60, what="every service")
        metrics = httpx.get(f"http://127.0.0.1:{flower_port}/metrics",
                            auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10).text  # fmt: skip
        assert "redis_memory_used_bytes" in metrics, "Flower's gauges did not follow"
        print(f"old master {master[:12]} back as a replica; {', '.join(SERVICES)} healthy; "
              "Flower's Redis gauges read from the new master")  # fmt: skip
        return 0
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        print(stack.compose("logs", "--no-color", "--tail", "40", check=False).stdout)
        return 1
    finally:
        stack.down()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as workdir:
        sys.exit(run(Path(workdir)))
