"""JSON log lines (pkg/json_logs.py) and the API's request ids: the fields each line carries,
and where they come from."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from pkg.json_logs import json_handler, request_id


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = json_handler("worker")
    handler.setStream(out)
    logger = logging.getLogger("test.json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_each_line_has_the_base_fields(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    logger.warning("disk %s%% full", 91)
    (line,) = records(out)
    assert line.keys() == {"time", "level", "service", "logger", "message"}
    assert (line["level"], line["service"], line["logger"]) == ("WARNING", "worker", logger.name)
    assert line["message"] == "disk 91% full"
    assert str(line["time"]).endswith("+00:00")


def test_celerys_lines_about_a_task_carry_its_id_and_name(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    # How Celery logs "received" and "succeeded": the task's fields as the message's data,
    # and again as an extra field, with the arguments' repr.
    context = {"name": "tasks.add", "id": "abc", "args": "(1,)", "kwargs": "{'y': 2}"}
    logger.info("Task %(name)s[%(id)s] received", context, extra={"data": context})
    (line,) = records(out)
    assert (line["task_id"], line["task_name"]) == ("abc", "tasks.add")
    assert "(1,)" not in json.dumps(line) and "'y'" not in json.dumps(line)


def test_a_request_id_and_an_error_are_carried(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    token = request_id.set("req-1")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    finally:
        request_id.reset(token)
    logger.info("after")
    failed, after = records(out)
    assert failed["request_id"] == "req-1" and "ValueError: boom" in str(failed["exc_info"])
    assert "request_id" not in after


@pytest.mark.anyio
async def test_every_answer_names_its_request_id(api: httpx.AsyncClient) -> None:
    given = await api.get("/healthz", headers={"X-Request-ID": "gw-7f3a:1"})
    assert given.headers["x-request-id"] == "gw-7f3a:1"
    fresh = await api.post("/api/v1/tasks/nope", json={})
    assert len(fresh.headers["x-request-id"]) == 32
    insane = await api.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert len(insane.headers["x-request-id"]) == 32
