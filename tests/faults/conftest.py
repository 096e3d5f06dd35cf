"""Fault fixtures: each test gets its own Redis DB and a client on it, so no other worker
(the session's shared one) takes its tasks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from pkg.celery_task import CeleryClient
from tests.support.processes import Redis

_dbs = itertools.count(4)


@dataclass
class Isolated:
    url: str
    client: CeleryClient
    store: redis.Redis


@pytest.fixture
def isolated(redis_server: Redis) -> Iterator[Isolated]:
    db = next(_dbs)
    assert db < 16, "out of Redis databases"
    url = redis_server.url(db)
    store = redis.Redis.from_url(url, decode_responses=True)
    store.flushdb()
    yield Isolated(url, build_celery_client(Settings(redis_url=url)), store)
    store.flushdb()
    store.close()
