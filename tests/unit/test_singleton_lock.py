"""The single-beat lock (pkg/singleton_lock.py) on the test Redis, with a short TTL: one holder,
a standby that takes over when the holder leaves or dies, and ``on_lost`` when the lock is
taken away."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from pkg.singleton_lock import SingletonLock
from tests.support.processes import Redis

TTL = 0.6


@pytest.fixture
def client(redis_server: Redis) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url(6)) as client:
        yield client


@pytest.fixture
def name() -> str:
    return f"test:lock:{uuid.uuid4().hex}"


def stand_by(lock: SingletonLock) -> threading.Event:
    """Enter ``lock`` in a thread; the event is set once it holds it."""
    held = threading.Event()

    def enter() -> None:
        lock.__enter__()
        held.set()

    threading.Thread(target=enter, daemon=True).start()
    return held


def test_a_standby_waits_and_takes_over_when_the_holder_leaves(
    client: redis.Redis, name: str
) -> None:
    first = SingletonLock(client, name, ttl=TTL, on_lost=lambda: None)
    second = SingletonLock(client, name, ttl=TTL, on_lost=lambda: None)
    with first:
        second_holds = stand_by(second)
        time.sleep(3 * TTL)  # renewed meanwhile: the standby must still wait
        assert not second_holds.is_set()
    assert second_holds.wait(2 * TTL), "the standby took over after a clean exit"
    second.__exit__(None, None, None)
    assert client.get(name) is None


def test_a_standby_takes_over_once_a_dead_holders_lock_expires(
    client: redis.Redis, name: str
) -> None:
    client.set(name, "a holder that died", px=int(TTL * 1000))  # nobody renews it
    standby = SingletonLock(client, name, ttl=TTL, on_lost=lambda: None)
    waited = time.monotonic()
    assert stand_by(standby).wait(5 * TTL)
    assert TTL / 2 < time.monotonic() - waited < 3 * TTL
    standby.__exit__(None, None, None)


def test_a_holder_whose_lock_is_taken_away_is_told_to_stop(client: redis.Redis, name: str) -> None:
    lost = threading.Event()
    with SingletonLock(client, name, ttl=TTL, on_lost=lost.set):
        client.set(name, "someone else")
        assert lost.wait(2 * TTL)
    assert client.get(name) == b"someone else", "leaving never releases another holder's lock"


def test_renewal_keeps_the_lock_past_its_ttl(client: redis.Redis, name: str) -> None:
    lost = threading.Event()
    with SingletonLock(client, name, ttl=TTL, on_lost=lost.set):
        time.sleep(4 * TTL)
        assert client.get(name) is not None and not lost.is_set()
