"""Task endpoints: submit a public task, read its state, revoke it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status

from internal.api import submitted
from internal.api.broker import off_loop
from internal.api.schemas import Revoked, Submitted, TaskState
from internal.celery_tasks import default_celery_client
from internal.config.setting import get_settings
from internal.tasks.celery.schemas import PUBLIC_TASKS, PublicTask, TaskBody

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

TaskId = Annotated[uuid.UUID, Path(description="The id returned when the task was submitted")]


def _submit(public_name: str, task: PublicTask, body: TaskBody) -> str:
    task_id = str(uuid.uuid4())
    submitted.record(task_id, public_name)
    try:
        default_celery_client.submit(
            task_name=task.celery_name, kwargs=body.model_dump(), task_id=task_id
        )
    except BaseException:
        submitted.forget(task_id)
        raise
    return task_id


def _add_submit_route(public_name: str, task: PublicTask) -> None:
    async def submit(request: Request, body: TaskBody) -> Submitted:
        task_id = await off_loop(
            lambda: _submit(public_name, task, body),
            timeout=get_settings().api_broker_timeout_seconds,
            what="submitting the task",
        )
        return Submitted(
            task_id=task_id,
            task_name=public_name,
            status_url=str(request.url_for("get_task", task_id=task_id)),
        )

    # Each route validates (and documents in OpenAPI) its task's own body model.
    submit.__annotations__["body"] = task.body
    router.add_api_route(
        f"/{public_name}",
        submit,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        summary=f"Submit {public_name}",
        description=task.summary,
        name=f"submit_{public_name}",
        responses={413: {"description": "Body too large"}, 503: {"description": "Broker down"}},
    )


for _name, _task in PUBLIC_TASKS.items():
    _add_submit_route(_name, _task)


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
        f"unknown task {task_name!r}; public tasks: {', '.join(sorted(PUBLIC_TASKS))}",
    )


async def _issued(task_id: uuid.UUID) -> submitted.SubmittedTask:
    entry = await off_loop(
        lambda: submitted.lookup(str(task_id)),
        timeout=get_settings().api_broker_timeout_seconds,
        what="looking up the task",
    )
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id} was submitted here")
    return entry


@router.get("/{task_id}", name="get_task", responses={404: {}, 503: {}})
async def get_task(task_id: TaskId) -> TaskState:
    entry = await _issued(task_id)
    st = await off_loop(
        lambda: default_celery_client.status(str(task_id)),
        timeout=get_settings().api_broker_timeout_seconds,
        what="reading the task state",
    )
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
    )


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {}, 409: {"description": "Already finished"}, 503: {}},
)
async def revoke_task(
    task_id: TaskId,
    terminate: Annotated[
        bool, Query(description="Also kill the process running it (unsafe for most tasks)")
    ] = False,
) -> Revoked:
    await _issued(task_id)
    timeout = get_settings().api_broker_timeout_seconds
    st = await off_loop(
        lambda: default_celery_client.status(str(task_id)), timeout=timeout, what="reading state"
    )
    if st.ready:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task already finished ({st.state})")
    await off_loop(
        lambda: default_celery_client.revoke(str(task_id), terminate=terminate),
        timeout=timeout,
        what="revoking the task",
    )
    return Revoked(task_id=str(task_id), terminate=terminate)
