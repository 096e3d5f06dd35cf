"""The FastAPI application: ``uvicorn internal.api.app:app`` (or services/run_api.py)."""

from __future__ import annotations

import gc

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from internal.api import health, tasks
from internal.api.body_limit import BodySizeLimitMiddleware
from internal.api.errors import http_error, validation_error
from internal.config.setting import get_settings


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="Background jobs API",
        version="0.1.0",
        description="Submit public Celery tasks, follow their progress, read results.",
    )
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    return app


app = create_app()
# Everything imported so far lives as long as the process: keep it out of the garbage
# collector's scans, which otherwise add milliseconds to the slowest requests.
gc.freeze()
