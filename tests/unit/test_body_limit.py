"""The body-size limit (internal/api/body_limit.py) around a tiny ASGI app that reads the whole
body: a declared Content-Length over the limit is refused before any of it is read, a streamed
(chunked) body is cut off as it crosses the limit, and bodies within it pass untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from internal.api.body_limit import BodySizeLimitMiddleware

pytestmark = pytest.mark.anyio
LIMIT = 100


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Echo:
    """Answers with the length of the body it read; counts the requests it saw."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        body = await Request(scope, receive).body()
        await PlainTextResponse(str(len(body)))(scope, receive, send)


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
async def http(echo: Echo) -> AsyncIterator[httpx.AsyncClient]:
    app = BodySizeLimitMiddleware(echo, max_bytes=LIMIT)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        yield client


async def chunks(sizes: list[int]) -> AsyncIterator[bytes]:
    for size in sizes:
        yield b"x" * size


async def test_a_declared_length_over_the_limit_is_refused_unread(
    http: httpx.AsyncClient, echo: Echo
) -> None:
    answer = await http.post("/", content=b"x" * (LIMIT + 1))
    assert answer.status_code == 413
    assert answer.json() == {"detail": f"request body larger than {LIMIT} bytes"}
    assert echo.calls == 0


async def test_a_streamed_body_is_cut_off_as_it_crosses_the_limit(
    http: httpx.AsyncClient, echo: Echo
) -> None:
    answer = await http.post("/", content=chunks([60, 60, 60]))
    assert answer.status_code == 413
    assert echo.calls == 1  # the app started reading, and never saw the end


@pytest.mark.parametrize("body", [b"", b"x" * LIMIT])
async def test_bodies_within_the_limit_pass(http: httpx.AsyncClient, body: bytes) -> None:
    answer = await http.post("/", content=body)
    assert (answer.status_code, answer.text) == (200, str(len(body)))


async def test_a_streamed_body_within_the_limit_passes(http: httpx.AsyncClient) -> None:
    answer = await http.post("/", content=chunks([50, 50]))
    assert (answer.status_code, answer.text) == (200, "100")


async def test_a_malformed_content_length_is_refused(http: httpx.AsyncClient) -> None:
    answer = await http.post("/", content=b"{}", headers={"content-length": "-1"})
    assert answer.status_code == 413
