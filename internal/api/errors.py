"""422 answers that always serialize: the field, the reason, never the offending input.

FastAPI's default handler echoes each invalid input back, and an input such as ``Infinity``
(accepted by Python's JSON parser) cannot be written as JSON, which turned a 422 into a 500.
JSON nested deeper than Python's parser recurses is a 422 too (FastAPI answers 400 for it).
"""

from __future__ import annotations

from fastapi import Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException  # FastAPI raises Starlette's for a bad body


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"type": err["type"], "loc": list(err["loc"]), "msg": str(err["msg"])}
        for err in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answer, except for a body its JSON parser gave up on by recursing too
    deep (FastAPI's 400 "error parsing the body"): that is invalid JSON, a 422 like any other."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == status.HTTP_400_BAD_REQUEST and isinstance(exc.__cause__, RecursionError):
        detail = [{"type": "json_invalid", "loc": ["body"], "msg": "JSON nested too deeply"}]
        return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return await http_exception_handler(request, exc)
