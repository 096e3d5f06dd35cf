"""Scale-out on this machine: end-to-end tasks/s of the prod stack with 1, 2 and 4 worker
containers behind two API containers, next to Redis's own ceiling in the same run.
``uv run --no-project --with-requirements requirements/test.txt python -m bench.scale_out``

Each round: wrk posts ``add`` tasks to both API replicas for ``--seconds`` while the workers run
them; the round ends when every task has run (queue empty, nothing unacknowledged). Tasks/s is
tasks acknowledged by the API over that whole time. Measured alongside, from each container's
cgroup (CPU seconds) and Redis's INFO: CPU per task of the workers, the APIs and Redis, and Redis
commands per task; Redis's ceiling is its single thread at 100% for that CPU per task, and
``redis-benchmark`` LPUSH in the same Redis container gives its raw command rate. Prod settings
(concurrency 4 per worker container, leases, JSON logs) without Flower, beat or Prometheus: with
Flower, task events are on (bench row 6: about a quarter of the throughput).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from bench.api_enqueue import ADD_BODY, wrk_report, wrk_started
from bench.common import Figure, container_redis
from tests.support.processes import free_port, wait_until
from tests.support.stack import Stack, copy_repo
from tests.support.stack_fixtures import write_secrets

WORKERS = (1, 2, 4)
APIS = 2
CONNECTIONS_PER_API = 8


@dataclass(frozen=True)
class Round:
    workers: int
    tasks: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds by service over the round
    redis_commands: int
    machine_busy: float  # share of this machine's cores busy over the round (all processes)

    @property
    def tasks_per_second(self) -> float:
        return self.tasks / self.seconds

    def cpu_ms_per_task(self, service: str) -> float:
        return 1000 * self.cpu[service] / self.tasks


def redis_cpu_and_commands(broker: redis.Redis) -> tuple[float, int]:
    cpu, stats = broker.info("cpu"), broker.info("stats")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"], int(stats["total_commands_processed"])


def cgroup_cpu_seconds(container: str) -> float:
    """CPU seconds a container has used, from its cgroup on this host (v1 or v2)."""
    root = Path("/sys/fs/cgroup")
    v1 = root / "cpuacct" / "docker" / container / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for v2 in (root / "system.slice" / f"docker-{container}.scope", root / "docker" / container):
        if (v2 / "cpu.stat").exists():
            stat = dict(line.split() for line in (v2 / "cpu.stat").read_text().splitlines())
            return int(stat["usage_usec"]) / 1e6
    raise RuntimeError(f"no cgroup CPU accounting found for container {container[:12]}")


def service_cpu(stack: Stack, service: str) -> float:
    return sum(cgroup_cpu_seconds(c) for c in stack.container_ids(service))


def drained(broker: redis.Redis) -> bool:
    return broker.llen("default") == 0 and broker.hlen("unacked") == 0


def one_round(stack: Stack, api_urls: list[str], workers: int, seconds: int) -> Round:
    broker = container_redis(stack, "redis-prod")
    broker.delete("default")
    services = ("worker-prod", "api-prod")
    cpu_before = {s: service_cpu(stack, s) for s in services}
    redis_cpu_before, commands_before = redis_cpu_and_commands(broker)
    machine_before = psutil.cpu_times()
    started = time.monotonic()
    loads = [
        wrk_started(f"{url}/api/v1/tasks/add", ADD_BODY, seconds, connections=CONNECTIONS_PER_API)
        for url in api_urls
    ]
    reports = [wrk_report(load) for load in loads]  # raises if a request failed
    wait_until(lambda: drained(broker), timeout=600, interval=0.2, what="the queue to drain")
    elapsed = time.monotonic() - started
    machine_after = psutil.cpu_times()
    idle = sum(getattr(machine_after, k) - getattr(machine_before, k) for k in ("idle", "iowait"))
    total = sum(machine_after) - sum(machine_before)
    redis_cpu_after, commands_after = redis_cpu_and_commands(broker)
    cpu = {s: service_cpu(stack, s) - cpu_before[s] for s in services}
    cpu["redis"] = redis_cpu_after - redis_cpu_before
    return Round(workers, int(sum(r["requests"] for r in reports)), elapsed, cpu,
                 commands_after - commands_before, 1 - idle / total)  # fmt: skip


def api_port(stack: Stack, replica: int) -> str:
    out = stack.compose("port", "--index", str(replica), "api-prod", "8000").stdout
    return out.strip().rsplit(":", 1)[1]


def redis_benchmark(stack: Stack) -> float:
    """LPUSH ops/s of this Redis, one client at a time in turn (50 clients, no pipelining)."""
    command = ('redis-benchmark -a "$(cat /run/secrets/redis_password)" -t lpush -n 200000 '
               "-q --csv")  # fmt: skip
    out = stack.compose("exec", "-T", "redis-prod", "sh", "-c", command).stdout
    row = next(line for line in out.splitlines() if line.startswith('"LPUSH"'))
    return float(row.split(",")[1].strip('"'))


def run(workdir: Path, rounds: int, seconds: int) -> list[Round]:
    tree = copy_repo(workdir / "repo")
    write_secrets(tree)
    first = free_port()
    while any(free_port() == first + i for i in range(1, APIS)):  # a best effort at a free range
        first = free_port()
    stack = Stack(tree, profile="prod", env={"API_PORT": f"{first}-{first + APIS - 1}"})
    results: list[Round] = []
    try:
        stack.compose("build", timeout=1800)
        for workers in WORKERS:
            stack.compose("up", "-d", "--wait", "--wait-timeout", "180", "--scale",
                          f"worker-prod={workers}", "--scale", f"api-prod={APIS}",
                          "api-prod", "worker-prod", timeout=300)  # fmt: skip
            urls = [f"http://127.0.0.1:{api_port(stack, i)}" for i in range(1, APIS + 1)]
            one_round(stack, urls, workers, 3)  # warm-up
            for _ in range(rounds):
                results.append(one_round(stack, urls, workers, seconds))
                r = results[-1]
                print(f"  {workers} worker container(s): {r.tasks_per_second:,.0f} tasks/s "
                      f"({r.tasks} in {r.seconds:.1f} s); CPU ms/task worker "
                      f"{r.cpu_ms_per_task('worker-prod'):.2f}, api "
                      f"{r.cpu_ms_per_task('api-prod'):.2f}, redis "
                      f"{r.cpu_ms_per_task('redis'):.3f}; redis commands/task "
                      f"{r.redis_commands / r.tasks:.1f}; machine busy "
                      f"{r.machine_busy:.0%}", flush=True)  # fmt: skip
        lpush = redis_benchmark(stack)
    finally:
        stack.down()
    print(table(results, lpush))
    return results


def table(results: list[Round], lpush: float) -> str:
    rows = [
        "| worker containers (4 processes each), 2 API containers | end-to-end tasks/s | "
        "CPU ms per task: workers | API | Redis | Redis commands per task | Redis ceiling, "
        "tasks/s (its one thread at 100%) | this machine's cores busy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workers in WORKERS:
        mine = [r for r in results if r.workers == workers]

        def fig(values: list[float], fmt: str = "{:,.0f}") -> str:
            return Figure(tuple(values)).show(fmt)

        redis_ms = [r.cpu_ms_per_task("redis") for r in mine]
        rows.append(
            f"| {workers} | {fig([r.tasks_per_second for r in mine])} | "
            f"{fig([r.cpu_ms_per_task('worker-prod') for r in mine], '{:.2f}')} | "
            f"{fig([r.cpu_ms_per_task('api-prod') for r in mine], '{:.2f}')} | "
            f"{fig(redis_ms, '{:.3f}')} | "
            f"{fig([r.redis_commands / r.tasks for r in mine], '{:.1f}')} | "
            f"{fig([1000 / ms for ms in redis_ms])} | "
            f"{fig([100 * r.machine_busy for r in mine], '{:.0f}%')} |"
        )
    rows.append(f"\nredis-benchmark LPUSH in the same Redis container: {lpush:,.0f} ops/s")
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        run(Path(workdir), args.rounds, args.seconds)
