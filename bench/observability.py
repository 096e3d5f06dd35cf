"""What metrics and traces cost the API: ``POST /api/v1/tasks/add`` req/s of the same API with
neither, with request metrics, and with metrics and traces (every request sampled, and 1%),
four API processes side by side on one Redis, each round running them back to back. Traces go
to an OTLP receiver of the tests' own, so export costs what it would against a collector on the
same host. Run alone: ``uv run --no-project --with-requirements requirements/test.txt python -m
bench.observability``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.api_enqueue import ADD_BODY, rps, start_api, wrk
from bench.common import Figure, Process, Row, paired_ratio
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.processes import Redis, free_port

TARGET = "≥ 0.95x"


@contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run(server: Redis, workdir: Path, *, n_rounds: int, seconds: int = 4) -> list[Row]:
    receiver = OtlpReceiver()
    traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    variants = {
        "off": {},
        "request metrics on": {"API_METRICS_PORT": str(free_port())},
        "metrics and traces, every request sampled": {
            "API_METRICS_PORT": str(free_port()), **traced,
        },
        "metrics and traces, 1% sampled": {
            "API_METRICS_PORT": str(free_port()), **traced,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01",
        },
    }  # fmt: skip
    apis: dict[str, tuple[Process, str, str]] = {}
    try:
        for i, (name, env) in enumerate(variants.items()):
            db = server.url(5 + i)
            with environment(env):
                proc, url = start_api(db, workdir / f"observability-{i}.log")
            apis[name] = (proc, url, db)
        for _, url, _ in apis.values():  # warm up
            wrk(f"{url}/api/v1/tasks/add", body=ADD_BODY, seconds=1, connections=16)
        figures: dict[str, list[float]] = {name: [] for name in apis}
        for r in range(n_rounds):
            for name, (_, url, db) in apis.items():
                redis.Redis.from_url(db).flushdb()
                post = wrk(
                    f"{url}/api/v1/tasks/add", body=ADD_BODY, seconds=seconds, connections=16
                )
                figures[name].append(rps(post))
            print(f"  round {r + 1}: " + ", ".join(f"{n} {v[-1]:,.0f}" for n, v in figures.items()))
    finally:
        for proc, _, db in apis.values():
            proc.stop()
            redis.Redis.from_url(db).flushdb()
        receiver.stop()
    off = Figure(tuple(figures.pop("off")))
    return [
        Row(
            "6. observability cost",
            f"POST /api/v1/tasks/add req/s, {name}",
            Figure(tuple(values)).show(),
            off.show(),
            "the same API, both off",
            paired_ratio(Figure(tuple(values)), off),
            TARGET,
        )
        for name, values in figures.items()
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        redis_server = Redis(Path(tmp) / "redis")
        try:
            for row in run(redis_server, Path(tmp), n_rounds=5):
                print(row.markdown())
        finally:
            redis_server.stop()
