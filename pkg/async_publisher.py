"""Publish Celery tasks from asyncio code to a Redis broker: no thread, no blocked event loop.

Celery's ``send_task`` is synchronous and spends most of its time in kombu's generic publish
machinery (a third of a millisecond a task here). A web server that enqueues on every request
cannot afford that on its event loop, nor a thread hop per request. This publisher builds the
same message ``send_task`` would for a task sent by name, value for value (Celery's own
``as_task_v2`` for the task protocol, kombu's JSON encoder for the body, kombu's Redis
envelope and priority lists; tests/integration/test_fast_paths.py compares every header and
property), fires Celery's ``before_task_publish`` / ``after_task_publish`` signals, and sends
it with one pipelined ``LPUSH`` on an asyncio Redis client, together with any commands of the
caller's own (so a request costs one round trip).

Publishes made while a pipeline is in flight wait and go together in the next one, so under load
a whole batch of requests shares one round trip (and one MULTI/EXEC); alone, a publish is sent at
once.

Only what an API needs: a task by name with keyword arguments, now, on its routed queue (and
the route's priority), with the execution options send_task takes from a task registered in
this process (time limits, priority, queue). Routes are looked up once per task name while
every route is a mapping; a route function (which may read the arguments) is asked on every
publish. For ETAs, countdowns, expiry, per-call options, links or a ``global_keyprefix``
(refused), use ``CeleryClient.submit``.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from bisect import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import redis.asyncio as aioredis
from celery import Celery, signals
from celery.app.routes import MapRoute
from celery.app.task import extract_exec_options
from celery.utils.nodenames import anon_nodename
from kombu.transport.redis import PRIORITY_STEPS
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.json import dumps as _untyped_dumps
from pydantic_core import to_json  # compact JSON, several times faster than json.dumps

from pkg.tracing import NO_SPAN, PublishTracing

# A message's delivery mode: persistent (what kombu sends for Celery tasks).
PERSISTENT = 2
# kombu's JSON encoder: type tags for datetimes, UUIDs, decimals, as a worker decodes them.
kombu_dumps: Any = _untyped_dumps
# kombu's separator between a queue's name and its priority step in the list's name.
PRIORITY_SEP = RedisChannel.sep


class AsyncTaskPublisher:
    def __init__(
        self,
        app: Celery,
        client: aioredis.Redis,
        *,
        timeout: float,
        tracing: PublishTracing | None = None,
    ) -> None:
        """``timeout``: seconds a batch may take before its publishes fail with TimeoutError.
        ``tracing``: a span around each publish (``pkg.tracing.publish_tracing``)."""
        if app.conf.broker_transport_options.get("global_keyprefix"):
            raise ValueError(
                "AsyncTaskPublisher writes kombu's Redis keys itself and does not support the "
                "global_keyprefix transport option; publish with CeleryClient.submit instead"
            )
        self.app = app
        self.client = client
        self.timeout = timeout
        self.tracing = tracing
        # Celery works this out (host name and pid) for every message unless it is given.
        self.origin = anon_nodename()
        # What before_task_publish receivers are told (send_task passes the app's policy).
        self._retry_policy = dict(app.conf.task_publish_retry_policy or {})
        self._routes: dict[str, Route] = {}
        # Finalized here, so send_task and this publisher see the same registered tasks (send
        # task applies a registered task's options; it does not finalize the app itself).
        self._tasks = app.tasks
        # Only mapping routes answer by name alone: a route function may read the arguments.
        self._static_routes = all(isinstance(r, MapRoute) for r in app.amqp.router.routes)
        self._pending: list[tuple[list[Sequence[Any]], asyncio.Future[Any]]] = []
        self._flushing = False

    def _route(self, task_name: str, kwargs: Mapping[str, Any]) -> Route:
        """Where a task goes and the options it carries, as send_task works them out."""
        if not self._static_routes:
            return self._lookup(task_name, kwargs)
        if task_name not in self._routes:
            self._routes[task_name] = self._lookup(task_name, {})
        return self._routes[task_name]

    def _lookup(self, task_name: str, kwargs: Mapping[str, Any]) -> Route:
        """The app's own router, given the execution options of the task if it is registered
        here (as send_task does).

        Like Celery for a queue on a direct exchange: the anonymous exchange, routing key =
        queue name, so the message goes straight onto the queue's list (its priority list if
        the route sets a priority). Anything else (topic or fanout exchanges, explicit routing
        keys) needs kombu's exchange tables: use ``CeleryClient.submit`` for those tasks."""
        task = self._tasks.get(task_name)
        options = {} if task is None else {
            k: v for k, v in extract_exec_options(task).items() if v is not None
        }  # fmt: skip
        limits = options.pop("time_limit", None), options.pop("soft_time_limit", None)
        unsupported = set(options) - {"queue", "priority", "serializer"}
        if unsupported or options.pop("serializer", "json") != "json":
            raise ValueError(
                f"task {task_name!r} sets {', '.join(sorted(unsupported)) or 'a serializer'}"
                ", which this publisher does not write; publish it with CeleryClient.submit"
            )
        route = self.app.amqp.router.route(options, task_name, (), dict(kwargs), task)
        queue = route["queue"]
        if queue.exchange.type != "direct" or route.get("exchange") or route.get("routing_key"):
            raise ValueError(
                f"task {task_name!r} is routed through an exchange, not straight to a "
                "queue; publish it with CeleryClient.submit"
            )
        return Route(queue, int(route.get("priority") or 0), *limits)

    def build(
        self, task_name: str, kwargs: Mapping[str, Any], *, task_id: str
    ) -> tuple[Route, Any]:
        """The task's route (its Redis list: ``route.list_key()``) and Celery's task message,
        as ``send_task`` builds them for a task sent by name (tested value for value)."""
        route = self._route(task_name, kwargs)
        message = self.app.amqp.as_task_v2(
            task_id,
            task_name,
            (),
            dict(kwargs),
            # What send_task passes for a task sent by name: no ignore_result override (the
            # worker uses the task's own), and replies to this app's thread.
            reply_to=self.app.thread_oid,
            ignore_result=None,
            origin=self.origin,
            time_limit=route.time_limit,
            soft_time_limit=route.soft_time_limit,
        )
        return route, message

    @staticmethod
    def serialize(route: Route, message: Any) -> bytes:
        """The message as kombu's Redis transport writes it: kombu's JSON encoder for the
        body (with its type tags), kombu's envelope and properties."""
        envelope = {
            "body": base64.b64encode(kombu_dumps(message.body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": message.headers,
            "properties": {
                **message.properties,
                "delivery_mode": PERSISTENT,
                "delivery_info": {"exchange": "", "routing_key": route.queue.name},
                "priority": route.priority,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return to_json(envelope)

    async def publish(
        self,
        task_name: str,
        kwargs: Mapping[str, Any],
        *,
        task_id: str,
        also: Sequence[Sequence[Any]] = (),
        guard: Guard | None = None,
    ) -> str | None:
        """Push the task, and run the commands in ``also`` first in the same round trip.

        With a ``guard``, its script decides, runs ``also`` and pushes in one step; return what
        the script returns. ``Once`` (an idempotency key): unless its key already holds a
        value, store ``once.value`` there for ``once.seconds`` and push; return the value the
        key holds (``once.value`` if this call queued the task). Without a guard, return None.

        The deadline (``timeout``) is this caller's, from now: a caller queued behind a
        stalled batch fails in time too. On TimeoutError the message may still land (Redis
        may only be slow): callers that retry should use ``Once``."""
        route, message = self.build(task_name, kwargs, task_id=task_id)
        # The arguments send_task gives both signals (the headers too: receivers find the
        # task's id there).
        publish_signal = {"sender": task_name, "body": message.body, "exchange": "",
                          "routing_key": route.queue.name, "headers": message.headers}  # fmt: skip
        span = (
            NO_SPAN
            if self.tracing is None
            else self.tracing(task_name, task_id, route.queue.name, message.headers)
        )
        with span:
            # Before serializing, as send_task does: receivers may add headers (a tracing one puts
            # the trace context there, where the worker reads it).
            signals.before_task_publish.send(
                **publish_signal,
                declare=[route.queue],
                properties=message.properties,
                retry_policy=dict(self._retry_policy),  # a copy per call, as send_task passes
            )
            payload = self.serialize(route, message)
            queue = route.list_key()
            commands: list[Sequence[Any]] = (
                [*also, ("LPUSH", queue, payload)]
                if guard is None
                else [guard.command(also, queue, payload)]
            )
            done = asyncio.get_running_loop().create_future()
            self._pending.append((commands, done))
            if not self._flushing:
                self._flushing = True
                asyncio.get_running_loop().call_soon(self._flush_soon)
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await asyncio.shield(done)
            except TimeoutError:
                # Nobody will read the batch's outcome now: mark it read, so asyncio does not
                # report an exception "never retrieved".
                done.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise
            signals.after_task_publish.send(**publish_signal)
        if guard is None:
            return None
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def _flush_soon(self) -> None:
        # Keep a reference: the loop only holds weak references to tasks.
        self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    # One MULTI/EXEC: each caller's writes and its message land together or not
                    # at all.
                    async with asyncio.timeout(self.timeout), self.client.pipeline() as pipe:
                        for commands, _ in batch:
                            for command in commands:
                                pipe.execute_command(*command)
                        replies = await pipe.execute()
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                except BaseException:  # cancelled (the loop is closing): nobody waits forever
                    for _, done in batch:
                        done.cancel()
                    raise
                else:
                    at = 0
                    for commands, done in batch:
                        at += len(commands)
                        if not done.done():
                            done.set_result(replies[at - 1])  # the caller's last command
        finally:
            self._flushing = False


@dataclass(frozen=True)
class Route:
    """A task's queue, the priority its route gives it, and its registered time limits."""

    queue: Any  # kombu.Queue
    priority: int
    time_limit: float | None = None
    soft_time_limit: float | None = None

    def list_key(self) -> str:
        """The Redis list kombu's transport pushes to: the queue's own for priority 0, else
        the list of the priority step at or below it (``queue\x06\x16<step>``)."""
        return priority_list(
            self.queue.name, PRIORITY_STEPS[bisect(PRIORITY_STEPS, self.priority) - 1]
        )


def priority_list(queue: str, step: int) -> str:
    """The name of kombu's Redis list for one priority step of a queue (step 0: the queue's
    own list)."""
    return f"{queue}{PRIORITY_SEP}{step}" if step else queue


# Runs the caller's own writes inside a script: ARGV from index {first} on holds them as
# (argument count, command, arguments...) groups.
RUN_ALSO_LUA = """
local i = {first}
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
"""

# Publish unless the idempotency key already holds a value: KEYS[1] the key, KEYS[2] the
# queue; ARGV: the value, the key's lifetime in s, the message, then the caller's own writes.
# Returns the value the key holds.
ONCE_LUA = """
local first = redis.call('GET', KEYS[1])
if first then return first end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
{also}
redis.call('LPUSH', KEYS[2], ARGV[3])
return ARGV[1]
"""


def script_command(
    script: str, keys: Sequence[Any], argv: Sequence[Any], also: Sequence[Sequence[Any]]
) -> tuple[Any, ...]:
    """An EVAL of ``script`` whose ``{also}`` runs the caller's writes (``also``) where it
    stands: how a guarded publish keeps them in the same atomic step as the message."""
    writes: list[Any] = []
    for command in also:
        writes += [len(command), *command]
    return ("EVAL", _with_also(script, len(argv) + 1), len(keys), *keys, *argv, *writes)


@lru_cache(maxsize=16)
def _with_also(script: str, first: int) -> str:
    """``script`` with its ``{also}`` expanded: once per script, not on every publish."""
    return script.replace("{also}", RUN_ALSO_LUA.replace("{first}", str(first)))


class Guard(Protocol):
    """A condition on a publish, checked in Redis with it: ``command`` is the one script that
    checks, runs the caller's writes and pushes the message (e.g. ``Once``)."""

    def command(
        self, also: Sequence[Sequence[Any]], queue: str, payload: bytes
    ) -> tuple[Any, ...]: ...


@dataclass(frozen=True)
class Once:
    """An idempotency key (a Redis key name), how long it holds, and the value it stores."""

    key: str
    seconds: int
    value: str

    def command(self, also: Sequence[Sequence[Any]], queue: str, payload: bytes) -> tuple[Any, ...]:
        return script_command(
            ONCE_LUA, (self.key, queue), (self.value, self.seconds, payload), also
        )
