"""What metrics and traces cost.

The API: ``POST /api/v1/tasks/add`` req/s of the same API with neither (twice), with request
metrics, and with metrics and traces (1% of requests sampled, and every one): five API
processes on one Redis, loaded all at once (``api_cost`` says why).

End to end: tasks/s of ``bench/throughput.py``'s project side (5,000 ``add`` tasks through
``submit_many``, the worker launcher with the prod flags) with the worker as it runs with
neither, with what the metrics need of it (task events, which Flower switches on and turns
into the task counters and run-time histograms), and with those and traces (1% sampled; the
producer here is not traced, so each sampled task is a trace of its own).

Traces go to an OTLP receiver of the tests' own that answers without decoding: each process
pays its export in full (encoding, HTTP), while the receiver's work, which a collector would do
elsewhere, stays off the two cores the processes are measured on. Run alone:
``uv run --no-project --with-requirements requirements/test.txt python -m bench.observability``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import redis

from bench.api_enqueue import ADD_BODY, rps, start_api, wrk, wrk_report, wrk_started
from bench.common import Figure, Process, Row, paired_ratio
from bench.throughput import Side, project_submit, project_worker
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.processes import Redis, free_port

TARGET = "≥ 0.95x"
TWIN = "a second API, both off"


@contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


SAMPLED_1PCT = {
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.01",
}


def run(server: Redis, workdir: Path, *, n_rounds: int, n_tasks: int = 5000) -> list[Row]:
    # A sink: decoding spans in this process would load the machine the APIs run on.
    receiver = OtlpReceiver(decode_spans=False)
    try:
        return api_cost(server, workdir, receiver, n_rounds=n_rounds) + end_to_end_cost(
            server, workdir, receiver, n_rounds=n_rounds, n_tasks=n_tasks
        )
    finally:
        receiver.stop()


def api_cost(
    server: Redis, workdir: Path, receiver: OtlpReceiver, *, n_rounds: int, seconds: int = 5
) -> list[Row]:
    """Every variant's API at once, under the same load, on one core of their own: this
    machine's speed drifts by 10 to 20% from second to second, which measured one after the
    other swamps a 5% difference; side by side, on a core the scheduler shares out evenly,
    each API's req/s is what its CPU per request allows, and drift hits all alike. A second
    API with both off shows how closely two identical processes agree. Fresh processes each
    round: two identical API processes also differ by several percent for their lifetime."""
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    variants = {
        "off": {},
        TWIN: {},
        "request metrics on": {"API_METRICS_PORT": str(free_port())},
        "metrics and traces, 1% sampled": {
            "API_METRICS_PORT": str(free_port()), **traced, **SAMPLED_1PCT,
        },
        "metrics and traces, every request sampled": {
            "API_METRICS_PORT": str(free_port()), **traced,
        },
    }  # fmt: skip
    cpus = sorted(os.sched_getaffinity(0))
    api_cpus, load_cpus = ({cpus[-1]}, set(cpus[:-1])) if len(cpus) > 1 else (set(cpus), set(cpus))
    pin(server.proc.pid, load_cpus)
    figures: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(n_rounds + 1):  # round 0 warms up
        apis: dict[str, tuple[Process, str]] = {}
        try:
            for i, (name, env) in enumerate(variants.items()):
                redis.Redis.from_url(server.url(5 + i)).flushdb()
                with environment(env):
                    apis[name] = start_api(server.url(5 + i), workdir / f"observability-{i}.log")
                pin(apis[name][0].proc.pid, api_cpus)
            for _, url in apis.values():  # the first requests of a process are slower
                wrk(f"{url}/api/v1/tasks/add", body=ADD_BODY, seconds=1, connections=8)
            loads = {
                name: wrk_started(f"{url}/api/v1/tasks/add", ADD_BODY, seconds, load_cpus)
                for name, (_, url) in apis.items()
            }
            if r:
                for name, load in loads.items():
                    figures[name].append(rps(wrk_report(load)))
                print(f"  round {r}: " + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in figures.items()))
            else:
                for load in loads.values():
                    wrk_report(load)
        finally:
            for proc, _ in apis.values():
                proc.stop()
    for i in range(len(variants)):
        redis.Redis.from_url(server.url(5 + i)).flushdb()
    off = Figure(tuple(figures.pop("off")))
    return [
        Row(
            "6. observability cost",
            f"POST /api/v1/tasks/add req/s, {name} (APIs side by side)",
            Figure(tuple(values)).show(),
            off.show(),
            "the same API, both off",
            paired_ratio(Figure(tuple(values)), off),
            "≈ 1.00x" if name == TWIN else TARGET,
        )
        for name, values in figures.items()
    ]


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus``."""
    for thread in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(thread), cpus)


def end_to_end_cost(
    server: Redis, workdir: Path, receiver: OtlpReceiver, *, n_rounds: int, n_tasks: int
) -> list[Row]:
    url = server.url(8)
    worker_env = {
        "off": {},
        "task events on (what the metrics need)": {"WORKER_TASK_EVENTS": "1"},
        "task events and traces, 1% sampled": {
            "WORKER_TASK_EVENTS": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            **SAMPLED_1PCT,
        },
    }  # fmt: skip
    sides = {
        name: Side(
            f"observability-{i}", url, project_submit(url), partial(project_worker, extra=env)
        )
        for i, (name, env) in enumerate(worker_env.items())
    }
    try:
        for r in range(n_rounds):
            order = list(sides.values())
            for side in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
                side.measure(n_tasks, workdir, 4, r)
            print(f"  round {r + 1}: " + ", ".join(
                f"{name} {side.end_to_end[-1]:,.0f} tasks/s" for name, side in sides.items()
            ))  # fmt: skip
    finally:
        redis.Redis.from_url(url).flushdb()
    off = Figure(tuple(sides.pop("off").end_to_end))
    return [
        Row(
            "6. observability cost",
            f"end-to-end tasks/s ({n_tasks:,} tasks, prefork, concurrency 4), {name}",
            Figure(tuple(side.end_to_end)).show(),
            off.show(),
            "the same worker, both off",
            paired_ratio(Figure(tuple(side.end_to_end)), off),
            TARGET,
        )
        for name, side in sides.items()
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        redis_server = Redis(Path(tmp) / "redis")
        try:
            for row in run(redis_server, Path(tmp), n_rounds=5):
                print(row.markdown())
        finally:
            redis_server.stop()
