"""The baseline: a Celery app with stock settings (only broker and result backend set).

``make_app(url)`` for the benchmark process; ``celery -A bench.stock_app worker`` with
``STOCK_REDIS_URL`` set for the worker. Its ``tasks.add`` is the same trivial task as the
project's, so both sides run identical task code.
"""

from __future__ import annotations

import os

from celery import Celery


def add(x: int, y: int) -> int:
    return x + y


def make_app(url: str) -> Celery:
    app = Celery("stock", broker=url, backend=url, set_as_current=False)
    app.task(name="tasks.add")(add)  # one callable for every app: no duplicate-name warning
    return app


if "STOCK_REDIS_URL" in os.environ:
    app = make_app(os.environ["STOCK_REDIS_URL"])
