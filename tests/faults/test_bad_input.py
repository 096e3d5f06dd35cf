"""Bad input, generated: whatever the body, task id or path, the API answers 4xx, never 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import LaunchFn
from tests.support.processes import Redis, free_port, wait_until

JSON = {"content-type": "application/json"}
# CI replays the same examples every run (a red CI must mean a change broke something); local
# runs explore new ones.
GENERATED = settings(
    max_examples=150,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def api(session_launch: LaunchFn, redis_server: Redis) -> Iterator[str]:
    """An API on its own Redis DB with no worker: accepted tasks only queue up."""
    port = free_port()
    session_launch("run_api.py", "--port", str(port), env={"REDIS_URL": redis_server.url(14)})
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, timeout=30, what="api")
    yield url


@GENERATED
@given(
    name=st.sampled_from(["add", "long_report", "flaky_fetch", "record_order"]),
    body=json_values,
)
def test_any_json_body_is_accepted_or_refused_with_422(api: str, name: str, body: Any) -> None:
    r = httpx.post(f"{api}/api/v1/tasks/{name}", content=json.dumps(body), headers=JSON)
    assert r.status_code in (202, 422), r.text
    if r.status_code == 422:
        assert r.json()["detail"], "a 422 must say why"


@GENERATED
@given(raw=st.binary(max_size=2048))
def test_any_bytes_are_refused_cleanly(api: str, raw: bytes) -> None:
    r = httpx.post(f"{api}/api/v1/tasks/add", content=raw, headers=JSON)
    assert r.status_code in (202, 400, 422), r.text


@GENERATED
@given(task_id=st.text(min_size=1, max_size=80))
def test_any_task_id_is_a_client_error(api: str, task_id: str) -> None:
    r = httpx.get(f"{api}/api/v1/tasks/{quote(task_id, safe='')}")
    # 307: dot segments ("." / "..") normalize to the collection path, which redirects.
    assert r.status_code in (307, 404, 405, 422), r.text


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_numbers_are_422_not_500(api: str, number: str) -> None:
    r = httpx.post(
        f"{api}/api/v1/tasks/long_report", content=f'{{"step_seconds": {number}}}', headers=JSON
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "step_seconds"]


@pytest.mark.parametrize("depth", [5_000, 30_000])
def test_deeply_nested_json_is_a_422_like_any_invalid_body(api: str, depth: int) -> None:
    """Regression (issue 10, promises): the README says 422; FastAPI answered 400."""
    body = "[" * depth + "]" * depth
    r = httpx.post(f"{api}/api/v1/tasks/add", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["msg"] in (
        "JSON nested too deeply",
        "Input should be a valid dictionary or object to extract fields from",
    )


def test_non_json_content_is_a_client_error(api: str) -> None:
    r = httpx.post(
        f"{api}/api/v1/tasks/add", content="x=1&y=2",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert r.status_code == 422


def test_openapi_fuzzing_finds_no_server_error(api: str, tmp_path: Path) -> None:
    # Schemathesis generates requests for every operation of the spec (seeded: the same ones
    # each run). /readyz answers a documented 503 here (no worker on this DB), so it is left
    # out. It runs in a temp dir, where it keeps its cache (.schemathesis/).
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"{api}/openapi.json",
            "--checks", "not_a_server_error",
            "--exclude-path", "/readyz",
            "--max-examples", "40",
            "--phases", "examples,coverage,fuzzing",
            "--seed", "1",
        ],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    summary = result.stdout[-2500:]
    print(summary)
    assert result.returncode == 0, summary + result.stderr[-2000:]
