"""Declare a task once, beside its function; read routes, queues, HTTP exposure and beat's
schedule from the declarations.

    @declare("tasks.add", http=Http("Add two integers."))
    def add(x: Annotated[int, Field(ge=0)], y: int) -> int: ...

``declare`` registers the function with Celery (``shared_task``) and builds a pydantic model
from its typed signature. The worker checks every call against that model before the task
runs, whoever sent it (a message from another client gets the API's checks too); the API uses
the same model as the request body. A ``TaskCatalog`` names the modules that hold an app's
tasks and derives the rest from what they declare.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, ClassVar

from celery import shared_task
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from pkg.celery_task import BaseTask

Seconds = float | timedelta


@dataclass(frozen=True)
class Http:
    """Expose the task as ``POST /api/v1/tasks/{name}`` (``name``: the function's by default),
    its request body the task's arguments model."""

    summary: str
    name: str | None = None


@dataclass(frozen=True)
class Periodic:
    """Have beat send the task every ``every`` seconds (a callable reads them from the settings
    object the schedule is built with). ``skip_missed``: a run not started within one period
    expires unrun, so a backlog of stale runs never piles up behind a stopped worker."""

    every: Seconds | Callable[[Any], Seconds]
    skip_missed: bool = False

    def period(self, settings: Any) -> timedelta:
        every = self.every(settings) if callable(self.every) else self.every
        return every if isinstance(every, timedelta) else timedelta(seconds=every)


class InvalidArguments(ValueError):
    """A task was called with arguments its declaration does not accept: a sender's bug, so it
    fails at once instead of being retried."""


@dataclass(frozen=True)
class Declaration:
    """Everything said about one task where it was declared."""

    name: str
    function_name: str
    queue: str | None
    http: Http | None
    schedule: Periodic | None
    arguments: type[BaseModel]
    signature: inspect.Signature

    @property
    def public_name(self) -> str | None:
        return None if self.http is None else self.http.name or self.function_name

    def check(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise InvalidArguments unless ``args``/``kwargs`` fit the declared signature."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.name}: {exc}") from None
        try:
            self.arguments.model_validate(bound.arguments)
        except ValidationError as exc:
            raise InvalidArguments(f"{self.name}: {describe(exc)}") from None


def describe(error: ValidationError) -> str:
    """pydantic's errors as one line, without the input values (they may be personal data)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'arguments'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    )


class DeclaredTask(BaseTask):
    """Base class of declared tasks: checks the arguments before the task body runs (in the
    worker, and in ``apply``). The check comes before Celery's retry wrapper, so a bad call is
    never retried."""

    declaration: ClassVar[Declaration | None] = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.declaration is not None:
            self.declaration.check(args, kwargs)
        return super().__call__(*args, **kwargs)


# Declarations by the module that made them, in declaration order (read by TaskCatalog).
_DECLARED: dict[str, list[Declaration]] = {}


def declare(
    name: str,
    *,
    queue: str | None = None,
    http: Http | None = None,
    schedule: Periodic | None = None,
    **celery_options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """Register the decorated function as the Celery task ``name`` (explicit, so that moving
    the function never renames it on the wire) on ``queue`` (None: the catalog's default),
    optionally exposed over HTTP and scheduled. Other keywords go to Celery's ``shared_task``."""

    def register(fn: Callable[..., Any]) -> Any:
        signature, model = arguments_model(fn, name, bound=bool(celery_options.get("bind")))
        declaration = Declaration(name, fn.__name__, queue, http, schedule, model, signature)
        declared = _DECLARED.setdefault(fn.__module__, [])
        declared[:] = [d for d in declared if d.name != name] + [declaration]
        return shared_task(name=name, base=DeclaredTask, declaration=declaration, **celery_options)(
            fn
        )

    return register


def arguments_model(
    fn: Callable[..., Any], name: str, *, bound: bool
) -> tuple[inspect.Signature, type[BaseModel]]:
    """The signature callers see (without ``self`` for a bound task) and a strict pydantic
    model of it: unknown arguments are errors, types are not coerced."""
    signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())[1 if bound else 0 :]
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{name}: declare each argument by name; {parameter} cannot be checked")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints.get(parameter.name, Any), default)
    model_name = "".join(part.title() for part in fn.__name__.split("_")) + "Body"
    model = create_model(model_name, __config__=ConfigDict(extra="forbid", strict=True), **fields)
    return signature.replace(parameters=parameters), model


class TaskCatalog:
    """The tasks declared in ``modules``, and what follows from them."""

    def __init__(self, default_queue: str, modules: Sequence[str]) -> None:
        self.default_queue = default_queue
        self.modules = tuple(modules)

    @cached_property
    def declarations(self) -> tuple[Declaration, ...]:
        found: dict[str, Declaration] = {}
        for module in self.modules:
            importlib.import_module(module)
            for declaration in _DECLARED.get(module, ()):
                if declaration.name in found:
                    raise ValueError(f"task {declaration.name!r} is declared twice")
                found[declaration.name] = declaration
        return tuple(found.values())

    def queue_of(self, declaration: Declaration) -> str:
        return declaration.queue or self.default_queue

    def queues(self) -> tuple[str, ...]:
        """Every queue a task is declared on, the default one first."""
        named = [self.default_queue] + [self.queue_of(d) for d in self.declarations]
        return tuple(dict.fromkeys(named))

    def routes(self) -> dict[str, dict[str, str]]:
        """Celery ``task_routes`` for the tasks declared off the default queue."""
        return {
            d.name: {"queue": self.queue_of(d)}
            for d in self.declarations
            if self.queue_of(d) != self.default_queue
        }

    def public(self) -> dict[str, Declaration]:
        """The tasks exposed over HTTP, by their public name."""
        public: dict[str, Declaration] = {}
        for d in self.declarations:
            if d.public_name is not None:
                if d.public_name in public:
                    raise ValueError(f"two tasks are exposed as {d.public_name!r}")
                public[d.public_name] = d
        return public

    def beat_schedule(self, settings: Any) -> dict[str, dict[str, Any]]:
        """Celery ``beat_schedule`` entries (named after the functions) for periodic tasks."""
        entries: dict[str, dict[str, Any]] = {}
        for d in self.declarations:
            if d.schedule is None:
                continue
            period = d.schedule.period(settings)
            entry: dict[str, Any] = {"task": d.name, "schedule": period}
            if d.schedule.skip_missed:
                entry["options"] = {"expires": period.total_seconds()}
            entries[d.function_name] = entry
        return entries
