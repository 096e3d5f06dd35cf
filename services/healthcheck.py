"""Container healthchecks: ``python services/healthcheck.py api|api-ready|worker|beat|flower``.

Exit 0 when healthy. Every probe is cheap (no Celery import): HTTP via the stdlib (the images
have no curl); the worker by the age of the file it touches at each heartbeat, instead of a
``celery inspect ping`` that costs about a second of CPU each time.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def http_ok(port: int, path: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
        return bool(response.status == 200)


# Heartbeats come every 2 s; a few missed ones mean the consumer is stuck or disconnected.
WORKER_HEARTBEAT_MAX_AGE = 15.0


def worker_alive() -> bool:
    from internal.config.setting import get_settings

    age = time.time() - get_settings().worker_liveness_file.stat().st_mtime
    return age < WORKER_HEARTBEAT_MAX_AGE


def heartbeat_fresh() -> bool:
    from internal.config.setting import get_settings
    from internal.infra.redis import HEARTBEAT_KEY, get_redis

    stamp = get_redis().get(HEARTBEAT_KEY)
    max_age = 3 * get_settings().heartbeat_interval_seconds
    return stamp is not None and time.time() - float(str(stamp)) < max_age


def check(service: str) -> bool:
    from internal.config.setting import get_settings

    settings = get_settings()
    if service == "api":
        return http_ok(settings.api_port, "/healthz")
    if service == "api-ready":  # the broker answers (Kubernetes readiness); no worker asked
        return http_ok(settings.api_port, "/readyz?workers=false")
    if service == "flower":
        return http_ok(settings.flower_port, "/healthcheck")
    if service == "worker":
        return worker_alive()
    if service == "beat":
        return heartbeat_fresh()
    raise SystemExit(f"unknown service {service!r}: use api, api-ready, worker, beat or flower")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: healthcheck.py api|api-ready|worker|beat|flower")
    try:
        healthy = check(sys.argv[1])
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        healthy = False
    sys.exit(0 if healthy else 1)
