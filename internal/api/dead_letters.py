"""Dead-letter endpoints: list the tasks that failed for good, read one, replay it, discard it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status

from internal.api.broker import on_broker
from internal.api.dead_letter_store import CannotReplay
from internal.api.dependencies import DeadLetterDep
from internal.api.schemas import DeadLetter, DeadLetterPage, DeadLetterSummary, Replayed
from internal.api.tasks import tasks_url

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])

LetterId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="The id of the task that failed (its dead letter keeps it)",
    ),
]


def _not_found(letter_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no dead letter {letter_id}")


@router.get("", responses={503: {}})
async def list_dead_letters(
    letters: DeadLetterDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="How many to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="How many to return")] = 50,
) -> DeadLetterPage:
    """Tasks that failed for good (retries exhausted, time limit, worker lost too often,
    rejected, invalid arguments), newest first; without arguments or tracebacks (read one
    for those)."""
    total, entries = await on_broker(
        letters.page(offset, limit),
        timeout=letters.tasks.settings.api_broker_timeout_seconds,
        what="reading dead letters",
    )
    items = [DeadLetterSummary.model_validate(entry) for entry in entries]
    return DeadLetterPage(total=total, offset=offset, limit=limit, items=items)


@router.get("/{letter_id}", responses={404: {}, 503: {}})
async def get_dead_letter(letter_id: LetterId, letters: DeadLetterDep) -> DeadLetter:
    entry = await on_broker(
        letters.get(letter_id),
        timeout=letters.tasks.settings.api_broker_timeout_seconds,
        what="reading a dead letter",
    )
    if entry is None:
        raise _not_found(letter_id)
    return DeadLetter.model_validate(entry)


@router.post(
    "/{letter_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Replayed,
    responses={404: {}, 409: {"description": "Cannot be sent again as it was"}, 503: {}},
)
async def replay_dead_letter(
    letter_id: LetterId, letters: DeadLetterDep, request: Request
) -> Replayed:
    """Queue the task again with a new id (its state at ``status_url``, with ``replay_of``);
    the dead letter is taken out in the same step, so it is never lost and never replayed
    twice."""
    try:
        # No timer here: the publisher gives each caller API_BROKER_TIMEOUT_SECONDS.
        replayed = await on_broker(
            letters.replay(letter_id),
            timeout=None,
            what="replaying a dead letter (it stays listed unless its task was queued)",
        )
    except CannotReplay as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if replayed is None:
        raise _not_found(letter_id)
    task_id, task_name = replayed
    base = tasks_url(request, letters.tasks.settings)
    return Replayed(
        task_id=task_id,
        task_name=task_name,
        status_url=f"{base}/{task_id}",
        replay_of=letter_id,
    )


@router.delete("/{letter_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}})
async def discard_dead_letter(letter_id: LetterId, letters: DeadLetterDep) -> Response:
    removed = await on_broker(
        letters.discard(letter_id),
        timeout=letters.tasks.settings.api_broker_timeout_seconds,
        what="discarding a dead letter",
    )
    if not removed:
        raise _not_found(letter_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
