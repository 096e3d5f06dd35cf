"""Run every benchmark and write the table: ``uv run python -m bench`` (see bench/README.md).

Options: ``--rounds N`` (default 5), ``--tasks N`` for the throughput rounds (default 5000),
``--no-docker`` to skip the compose and image benchmarks, ``--out FILE`` (default
bench/results.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench import api_enqueue, docker_stack, observability, round_trip, throughput
from bench.common import TABLE_HEADER, Row
from tests.support.processes import REPO_ROOT, Redis, redis_server_binary
from tests.support.stack import docker_ready


def command_output(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not available"


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip
    redis_version = command_output(redis_server_binary(), "--version").split(" sha=")[0]
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_kb / 2**20:.0f} GiB, Linux {platform.release()}; "
        f"Python {platform.python_version()} (host), {redis_version}; "
        f"{command_output('docker', 'version', '--format', 'Docker {{.Server.Version}}')}"
    )


def require(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        raise SystemExit(f"bench: `{tool}` is not on PATH (Debian: apt-get install {package})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results.md")
    args = parser.parse_args()
    require("wrk", "wrk")
    require("redis-benchmark", "redis-tools")
    docker_problem = None if args.no_docker else docker_ready()
    if docker_problem:
        raise SystemExit(f"bench: Docker is needed ({docker_problem}); or pass --no-docker")

    rows: list[Row] = []
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        server = Redis(workdir / "redis")
        try:
            print("1. end-to-end throughput", flush=True)
            rows += throughput.run(server, workdir, n_tasks=args.tasks, n_rounds=args.rounds)
            print("2. API enqueue", flush=True)
            rows += api_enqueue.run(server, workdir, n_rounds=args.rounds)
            print("3. round trip", flush=True)
            rows += round_trip.run(server, workdir, n_rounds=args.rounds)
            print("6. observability cost", flush=True)
            rows += observability.run(server, workdir, n_rounds=args.rounds)
        finally:
            server.stop()
        if not args.no_docker:
            base_image = os.environ.get("PYTHON_IMAGE", "python:3.13-slim")
            print("4. dev loop (compose)", flush=True)
            rows += docker_stack.dev_loop(workdir, n_rounds=min(args.rounds, 3))
            print("5. prod image", flush=True)
            rows += docker_stack.prod_image(workdir, args.rounds, base_image)
    minutes = (dt.datetime.now(dt.UTC) - started).total_seconds() / 60
    report = "\n".join(
        [
            f"Run {started:%Y-%m-%d %H:%M} UTC, {minutes:.0f} min, {args.rounds} rounds a figure: "
            "`uv run python -m bench`",
            "",
            f"Machine: {machine()}",
            "",
            TABLE_HEADER,
            *(row.markdown() for row in rows),
            "",
        ]
    )
    args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
