"""What metrics and traces cost.

The API: ``POST /api/v1/tasks/add`` req/s of the same API with neither (twice), with request
metrics, and with metrics and traces (1% of requests sampled, and every one): five API
processes on one Redis, loaded all at once (``api_cost`` says why).

The worker: tasks/s of the worker launcher (prod flags, prefork, concurrency 4) with neither,
a second time with neither, with what the metrics need of it (task events, which Flower
switches on and turns into the task counters and run-time histograms), and with those and
traces (1% sampled): four workers at once on one core, each on a queue of its own kept full
(``worker_cost``). The producer is this process and is not traced, so every sampled task is a
trace of its own; what tracing costs a publisher is the API half.

Traces go to an OTLP receiver of the tests' own that answers without decoding: each process
pays its export in full (encoding, HTTP), while the receiver's work, which a collector would do
elsewhere, stays off the two cores the processes are measured on. Run alone:
``uv run --no-project --with-requirements requirements/test.txt python -m bench.observability``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.api_enqueue import ADD_BODY, rps, start_api, wrk, wrk_report, wrk_started
from bench.common import Figure, Process, Row, paired_ratio
from bench.throughput import project_submit, project_worker
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.processes import Redis, free_port

TARGET = "≥ 0.95x"
TWIN = "a second API, both off"
TWIN_WORKER = "a second worker, both off"


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


def run(server: Redis, workdir: Path, *, n_rounds: int) -> list[Row]:
    # A sink: decoding spans in this process would load the machine the APIs run on.
    receiver = OtlpReceiver(decode_spans=False)
    try:
        return api_cost(server, workdir, receiver, n_rounds=n_rounds) + worker_cost(
            server, workdir, receiver, n_rounds=n_rounds
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
    api_cpus, load_cpus = split_cpus()
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


def split_cpus() -> tuple[set[int], set[int]]:
    """The last CPU for the processes measured; the others for Redis and the load."""
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[-1]}, set(cpus[:-1])) if len(cpus) > 1 else (set(cpus), set(cpus))


@contextmanager
def on_cpus(cpus: set[int]) -> Iterator[None]:
    """This thread on ``cpus`` meanwhile: what it starts inherits them."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` onto ``cpus``."""
    for thread in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(thread), cpus)


def worker_cost(
    server: Redis,
    workdir: Path,
    receiver: OtlpReceiver,
    *,
    n_rounds: int,
    n_tasks: int = 5000,
    seconds: float = 10,
) -> list[Row]:
    """Every variant's worker at once, as ``api_cost`` runs the APIs: the worker launcher with
    the prod flags (prefork, concurrency 4), each on a Redis database of its own holding more
    ``add`` tasks than it can run in the window, all on one core, Redis and this process on the
    other. Tasks/s is results stored in the window, after a warm-up; the producer (this
    process, not traced) publishes every queue full before it."""
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **SAMPLED_1PCT}
    variants = {
        "off": {},
        TWIN_WORKER: {},
        "task events on (what the metrics need)": {"WORKER_TASK_EVENTS": "1"},
        "task events and traces, 1% sampled": {"WORKER_TASK_EVENTS": "1", **traced},
    }
    urls = {name: server.url(10 + i) for i, name in enumerate(variants)}
    submits = {name: project_submit(url) for name, url in urls.items()}
    worker_cpus, load_cpus = split_cpus()
    pin(server.proc.pid, load_cpus)
    figures: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(n_rounds + 1):  # round 0 warms up
        names = list(variants)
        names = names[r % len(names) :] + names[: r % len(names)]  # who starts and fills first
        workers: dict[str, Process] = {}
        try:
            for name in names:
                redis.Redis.from_url(urls[name]).flushdb()
                with on_cpus(worker_cpus):  # the worker and the pool it forks
                    log = workdir / f"observability-worker-{len(workers)}.log"
                    workers[name] = project_worker(urls[name], log, 4, extra=variants[name])
            with on_cpus(load_cpus):
                for name in names:
                    submits[name](n_tasks)
                time.sleep(2)  # every worker busy, its pool warm
                before = results_stored(urls)
                time.sleep(seconds)
                after = results_stored(urls)
            if r:
                for name in variants:
                    (count0, t0), (count1, t1) = before[name], after[name]
                    figures[name].append((count1 - count0) / (t1 - t0))
                print(f"  round {r}: " + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in figures.items()))
            for name, url in urls.items():
                if not redis.Redis.from_url(url).llen("default"):
                    raise RuntimeError(f"{name}: its queue ran dry in the window; raise n_tasks")
        finally:
            for worker in workers.values():
                worker.stop()
    for url in urls.values():
        redis.Redis.from_url(url).flushdb()
    off = Figure(tuple(figures.pop("off")))
    return [
        Row(
            "6. observability cost",
            f"tasks/s a worker runs (prefork, concurrency 4, queue kept full), {name} "
            "(workers side by side)",
            Figure(tuple(values)).show(),
            off.show(),
            "the same worker, both off",
            paired_ratio(Figure(tuple(values)), off),
            "≈ 1.00x" if name == TWIN_WORKER else TARGET,
        )
        for name, values in figures.items()
    ]


def results_stored(urls: dict[str, str]) -> dict[str, tuple[int, float]]:
    """Per database, its key count (one result key per task done; the queue's and the
    worker's own keys stay while the queue is not empty) and when it was read."""
    return {
        name: (int(redis.Redis.from_url(url).dbsize()), time.perf_counter())
        for name, url in urls.items()
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        redis_server = Redis(Path(tmp) / "redis")
        try:
            for row in run(redis_server, Path(tmp), n_rounds=5):
                print(row.markdown())
        finally:
            redis_server.stop()
