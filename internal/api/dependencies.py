"""What the endpoints get from their app, as FastAPI dependencies: its settings, its task
store (which holds the Celery client, the Redis clients and the publisher) and its dead-letter
store. ``create_app``
puts them on ``app.state``; a test builds an app with its own, or swaps one through
``app.dependency_overrides``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from internal.api.dead_letter_store import DeadLetterStore
from internal.api.task_store import TaskStore
from internal.config.setting import Settings


# async: a plain ``def`` dependency would run in a worker thread on every request.
async def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def task_store(request: Request) -> TaskStore:
    store: TaskStore = request.app.state.task_store
    return store


async def dead_letter_store(request: Request) -> DeadLetterStore:
    store: DeadLetterStore = request.app.state.dead_letter_store
    return store


SettingsDep = Annotated[Settings, Depends(app_settings)]
StoreDep = Annotated[TaskStore, Depends(task_store)]
DeadLetterDep = Annotated[DeadLetterStore, Depends(dead_letter_store)]
