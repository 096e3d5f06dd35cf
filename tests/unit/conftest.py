"""The fast layer's fixtures: the API in process (httpx's ASGI transport) on a database of the
suite's Redis, emptied for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis

from internal.api.app import create_app
from internal.config.setting import Settings
from tests.support.processes import Redis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(redis_server: Redis) -> Settings:
    url = redis_server.url(6)
    redis.Redis.from_url(url).flushdb()
    # A metrics port turns the request metrics on (nothing serves them: no lifespan here).
    return Settings(
        redis_url=url, api_max_body_bytes=1024, readiness_timeout_seconds=0.2, api_metrics_port=9
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(settings.broker_url, decode_responses=True) as client:
        yield client


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client
    await app.state.task_store.aclose()
