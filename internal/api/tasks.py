"""Task endpoints: submit a public task, read its state, revoke it."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel

from internal.api import submitted
from internal.api.broker import off_loop, on_broker
from internal.api.dependencies import StoreDep
from internal.api.metrics import PUBLISH_FAILURES
from internal.api.schemas import Revoked, Submitted, TaskState
from internal.api.task_store import TaskStore
from internal.config.setting import Settings
from pkg.celery_task import TaskStatus
from pkg.channel_waiter import TooManyWaiters
from pkg.task_catalog import Declaration, TaskCatalog

PREFIX = "/api/v1/tasks"
log = logging.getLogger(__name__)

# A long poll holds a Redis pub/sub connection; keep it short and let clients ask again.
MAX_WAIT_SECONDS = 30.0

TaskId = Annotated[uuid.UUID, Path(description="The id returned when the task was submitted")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (e.g. a UUID). The same key within "
        "API_IDEMPOTENCY_SECONDS answers with the first task's id and queues nothing again: "
        "retry a submission that timed out without running it twice",
    ),
]


def tasks_url(request: Request, settings: Settings) -> str:
    """This router's absolute URL as clients see it: from PUBLIC_BASE_URL when set (a Host
    header is then never echoed back), else like ``request.base_url`` (which builds URL
    objects on every call: a cost this hot path does not need)."""
    public = settings.public_base_url
    if public is not None:
        parts = urlsplit(str(public))
        return _tasks_url_for(parts.scheme, parts.netloc, parts.path)
    scope = request.scope
    host = request.headers.get("host") or "{}:{}".format(*scope["server"])
    root_path = scope.get("app_root_path", scope.get("root_path", ""))
    return _tasks_url_for(scope["scheme"], host, root_path)


@lru_cache(maxsize=64)
def _tasks_url_for(scheme: str, host: str, root_path: str) -> str:
    return f"{scheme}://{host}{root_path.rstrip('/')}{PREFIX}"


def tasks_router(catalog: TaskCatalog) -> APIRouter:
    """Submit, read and revoke routes; one submit route per task the catalog exposes."""
    router = APIRouter(prefix=PREFIX, tags=["tasks"])
    public = catalog.public()
    for name, task in public.items():
        _add_submit_route(router, name, task)

    @router.post(
        "/{task_name}",
        status_code=status.HTTP_404_NOT_FOUND,
        summary="Any other task name",
        responses={404: {"description": "Not a public task"}},
    )
    async def submit_unknown(task_name: str) -> None:
        # Registered but non-public tasks (Celery's own, internal ones) are refused the same way.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"unknown task {task_name!r}; public tasks: {', '.join(sorted(public))}",
        )

    router.add_api_route(
        "/{task_id}",
        get_task,
        methods=["GET"],
        name="get_task",
        responses={404: {}, 429: {"description": "Too many clients waiting"}, 503: {}},
    )
    router.add_api_route(
        "/{task_id}",
        revoke_task,
        methods=["DELETE"],
        status_code=status.HTTP_202_ACCEPTED,
        responses={404: {}, 409: {"description": "Already finished"}, 503: {}},
    )
    return router


def _add_submit_route(router: APIRouter, public_name: str, task: Declaration) -> None:
    async def submit(
        request: Request, body: BaseModel, store: StoreDep, idempotency_key: IdempotencyKey = None
    ) -> Response:
        try:
            # No timer here: the publisher gives each caller API_BROKER_TIMEOUT_SECONDS.
            task_id = await on_broker(
                store.submit(str(uuid.uuid4()), public_name, task, body, idempotency_key),
                timeout=None,
                what="submitting the task (it may still be queued: a retry with the same "
                "Idempotency-Key header never queues it twice)",
            )
        except submitted.KeyReused as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        except HTTPException:  # 503 from on_broker
            PUBLISH_FAILURES.inc()
            raise
        # The line that joins this request (its request_id) to the task's own lines (task_id);
        # never the arguments.
        log.info("submitted %s", task.name, extra={"task_id": task_id, "task_name": task.name})
        # The hot path of the API: the status URL comes from a cached prefix (Starlette's
        # url_for cost more than the publish) and the answer is serialized once, without
        # FastAPI validating its own return value again (``response_model`` still documents it).
        answer = Submitted(
            task_id=task_id,
            task_name=public_name,
            status_url=f"{tasks_url(request, store.settings)}/{task_id}",
        )
        return Response(
            answer.model_dump_json(), status.HTTP_202_ACCEPTED, media_type="application/json"
        )

    # Each route validates (and documents in OpenAPI) its task's arguments model.
    submit.__annotations__["body"] = task.arguments
    router.add_api_route(
        f"/{public_name}",
        submit,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=Submitted,
        summary=f"Submit {public_name}",
        description=task.http.summary if task.http else None,
        name=f"submit_{public_name}",
        responses={413: {"description": "Body too large"}, 503: {"description": "Broker down"}},
    )


async def _read(
    store: TaskStore, task_id: uuid.UUID, wait: float = 0
) -> tuple[submitted.SubmittedTask, TaskStatus]:
    timeout = store.settings.api_broker_timeout_seconds + wait
    read = store.read_when_ready(str(task_id), wait) if wait else store.read(str(task_id))
    try:
        entry, st = await on_broker(read, timeout=timeout, what="reading the task state")
    except TooManyWaiters:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many clients are waiting for results (API_MAX_WAITERS="
            f"{store.settings.api_max_waiters}); ask again, or without ?wait=",
            headers={"Retry-After": "1"},
        ) from None
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id} was submitted here")
    return entry, st


async def get_task(
    task_id: TaskId,
    store: StoreDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Seconds to wait for a final state (SUCCESS, FAILURE, REVOKED) before "
            "answering; 0 answers at once",
        ),
    ] = 0,
) -> TaskState:
    entry, st = await _read(store, task_id, wait)
    return TaskState(
        task_id=st.task_id,
        task_name=entry.task_name,
        state=st.state,
        ready=st.ready,
        result=st.result,
        error=st.error,
        progress=dict(st.progress) if st.progress is not None else None,
        submitted_at=entry.submitted_at,
        date_done=st.date_done,
        replay_of=entry.replay_of,
    )


async def revoke_task(
    task_id: TaskId,
    store: StoreDep,
    terminate: Annotated[
        bool, Query(description="Also kill the process running it (unsafe for most tasks)")
    ] = False,
) -> Revoked:
    _, st = await _read(store, task_id)
    if st.ready:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task already finished ({st.state})")
    await off_loop(
        lambda: store.client.revoke(str(task_id), terminate=terminate),
        timeout=store.settings.api_broker_timeout_seconds,
        what="revoking the task",
    )
    return Revoked(task_id=str(task_id), terminate=terminate)
