"""The FastAPI application: ``uvicorn internal.api.app:app`` (or services/run_api.py)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import start_http_server
from starlette.exceptions import HTTPException

from internal.api import dead_letters, health
from internal.api.body_limit import BodySizeLimitMiddleware
from internal.api.dead_letter_store import DeadLetterStore
from internal.api.errors import http_error, validation_error
from internal.api.metrics import RequestMetrics
from internal.api.request_id import RequestIdMiddleware
from internal.api.task_store import TaskStore
from internal.api.tasks import tasks_router
from internal.config.setting import Settings, get_settings
from internal.infra.celery import TASKS, build_celery_client, dead_letter_box
from pkg.celery_task import CeleryClient
from pkg.task_catalog import TaskCatalog
from pkg.trace_requests import TraceRequests
from pkg.tracing import start_tracing


def create_app(
    settings: Settings | None = None,
    tasks: TaskCatalog = TASKS,
    client: CeleryClient | None = None,
) -> FastAPI:
    """The API for ``settings`` (default: the process's) and the tasks ``tasks`` declares.
    ``client`` defaults to the process's own Celery client when both are the process's, else
    to one built for them."""
    if client is None and settings is None and tasks is TASKS:
        from internal.celery_tasks import default_celery_client  # built once per process

        client = default_celery_client
    settings = settings or get_settings()
    store = TaskStore(settings, client or build_celery_client(settings, tasks))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.api_metrics_port is not None:
            # prometheus_client's own server, in a thread: the event loop never serves it.
            start_http_server(settings.api_metrics_port, addr=settings.listen_host)
        yield
        await store.aclose()

    app = FastAPI(
        lifespan=lifespan,
        # Not FastAPI's own OpenTelemetry spans: TraceRequests (below) costs far less.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="Background jobs API",
        version="0.1.0",
        description="Submit public Celery tasks, follow their progress, read results.",
    )
    app.state.settings = settings
    app.state.task_store = store
    app.state.dead_letter_store = DeadLetterStore(store, dead_letter_box(settings), tasks)
    app.include_router(health.router)
    app.include_router(tasks_router(tasks))
    app.include_router(dead_letters.router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    if settings.api_metrics_port is not None:  # collected only where something serves them
        app.add_middleware(RequestMetrics)
    app.add_middleware(RequestIdMiddleware)  # outermost: a refused body gets an id too
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    return app


app = create_app()
# The API publishes only with its own publisher, which makes its publish spans itself (far
# cheaper than the Celery instrumentation's signal handlers).
if start_tracing("api", celery=False):
    app.add_middleware(TraceRequests, skip_paths=health.PROBE_PATHS)  # outermost
# Everything imported so far lives as long as the process: keep it out of the garbage
# collector's scans, which otherwise add milliseconds to the slowest requests.
gc.freeze()
