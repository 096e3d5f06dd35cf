"""422 answers that always serialize: the field, the reason, never the offending input.

FastAPI's default handler echoes each invalid input back, and an input such as ``Infinity``
(accepted by Python's JSON parser) cannot be written as JSON, which turned a 422 into a 500.
"""

from __future__ import annotations

from fastapi import Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"type": err["type"], "loc": list(err["loc"]), "msg": str(err["msg"])}
        for err in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
