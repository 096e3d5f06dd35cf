"""The baseline: a Celery app with stock settings (only broker and result backend set).

Started as ``celery -A bench.stock_app worker``; it defines the same trivial ``tasks.add`` as the
project, so both sides run identical task code.
"""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ["STOCK_REDIS_URL"]
app = Celery("stock", broker=URL, backend=URL)


@app.task(name="tasks.add")  # type: ignore[untyped-decorator]
def add(x: int, y: int) -> int:
    return x + y
