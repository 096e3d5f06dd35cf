"""Dead letters without a worker: the store's bound, and the API in process (httpx's ASGI
transport) over entries written as a worker writes them: pages newest first, one in full,
replay (new id, entry taken out with the push), discard, and 4xx for bad input."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
import redis

from internal.config.setting import Settings
from internal.infra.celery import dead_letter_box
from pkg.dead_letters import DeadLetter, DeadLetters

pytestmark = pytest.mark.anyio
LETTERS = "/api/v1/dead-letters"


def failed(n: int, task_name: str = "tasks.add", **fields: object) -> DeadLetter:
    """The n-th failure (n minutes after a fixed time), as a worker records it."""
    when = dt.datetime(2026, 11, 27, 12, n, tzinfo=dt.UTC).isoformat()
    base = {"id": f"t{n}", "task_name": task_name, "args": [], "kwargs": {"x": n, "y": 1},
            "error": "ValueError: no", "traceback": "Traceback ...", "attempts": 1,
            "failed_at": when, "queue": "default", "worker": "w1"}  # fmt: skip
    return DeadLetter(**{**base, **fields})  # type: ignore[arg-type]


@pytest.fixture
def kept(settings: Settings, store: redis.Redis) -> DeadLetters:
    letters = dead_letter_box(settings)
    for n in range(1, 6):
        letters.add(store, failed(n))
    return letters


def test_the_store_keeps_the_newest_up_to_its_bound(store: redis.Redis) -> None:
    letters = DeadLetters("test:bounded", max_entries=3)
    dropped = [letters.add(store, failed(n)) for n in range(1, 6)]
    assert dropped == [0, 0, 0, 1, 1]
    assert store.zrange("test:bounded", 0, -1) == ["t3", "t4", "t5"]
    assert sorted(store.hkeys("test:bounded:entries")) == ["t3", "t4", "t5"]


async def test_pages_are_newest_first(api: httpx.AsyncClient, kept: DeadLetters) -> None:
    page = (await api.get(LETTERS, params={"offset": 1, "limit": 2})).json()
    assert (page["total"], page["offset"], page["limit"]) == (5, 1, 2)
    assert [item["id"] for item in page["items"]] == ["t4", "t3"]
    assert "kwargs" not in page["items"][0] and "traceback" not in page["items"][0]
    beyond = (await api.get(LETTERS, params={"offset": 10})).json()
    assert (beyond["total"], beyond["items"]) == (5, [])


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "x"}])
async def test_bad_paging_is_422(api: httpx.AsyncClient, params: dict[str, int | str]) -> None:
    answer = await api.get(LETTERS, params=params)
    assert answer.status_code == 422
    assert next(iter(params)) in answer.text


async def test_one_in_full_and_unknown_ids_404(api: httpx.AsyncClient, kept: DeadLetters) -> None:
    one = (await api.get(f"{LETTERS}/t2")).json()
    assert (one["kwargs"], one["traceback"], one["worker"]) == (
        {"x": 2, "y": 1},
        "Traceback ...",
        "w1",
    )
    for answer in (
        await api.get(f"{LETTERS}/nope"),
        await api.delete(f"{LETTERS}/nope"),
        await api.post(f"{LETTERS}/nope/replay"),
    ):
        assert answer.status_code == 404 and "no dead letter nope" in answer.text


async def test_replay_queues_a_new_task_and_takes_the_entry_out(
    api: httpx.AsyncClient, kept: DeadLetters, store: redis.Redis
) -> None:
    answer = await api.post(f"{LETTERS}/t3/replay")
    assert answer.status_code == 202, answer.text
    new = answer.json()
    assert (new["replay_of"], new["task_name"]) == ("t3", "add")
    (raw,) = store.lrange("default", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["id"] == new["task_id"] and message["headers"]["task"] == "tasks.add"
    assert message["headers"]["kwargsrepr"] == "{'x': 3, 'y': 1}"
    assert not store.hexists(kept.entries, "t3") and store.zscore(kept.index, "t3") is None
    state = (await api.get(new["status_url"])).json()
    assert (state["state"], state["replay_of"]) == ("PENDING", "t3")
    assert (await api.post(f"{LETTERS}/t3/replay")).status_code == 404  # never twice
    assert store.llen("default") == 1


async def test_positional_arguments_are_named_by_the_declaration(
    api: httpx.AsyncClient, kept: DeadLetters, store: redis.Redis
) -> None:
    kept.add(store, failed(7, args=[4, 5], kwargs={}))
    kept.add(store, failed(8, task_name="other.service.task", args=[1], kwargs={}))
    assert (await api.post(f"{LETTERS}/t7/replay")).status_code == 202
    (raw,) = store.lrange("default", 0, -1)
    assert json.loads(raw)["headers"]["kwargsrepr"] == "{'x': 4, 'y': 5}"
    refused = await api.post(f"{LETTERS}/t8/replay")
    assert refused.status_code == 409 and "positional arguments" in refused.text
    assert store.hexists(kept.entries, "t8"), "a refused replay keeps the entry"


async def test_discard_removes(api: httpx.AsyncClient, kept: DeadLetters) -> None:
    assert (await api.delete(f"{LETTERS}/t1")).status_code == 204
    assert (await api.get(f"{LETTERS}/t1")).status_code == 404
    assert (await api.get(LETTERS)).json()["total"] == 4
