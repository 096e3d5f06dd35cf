"""CeleryClient: a small, reusable owner of a Celery app with production defaults.

Nothing here knows about this application: names, URLs, task modules, routes and the beat
schedule all come from the caller. Callers submit by task *name* (``send_task``), so a process
that only enqueues work needs no task code (this project's API imports the task modules only
to read their declarations: ``pkg/task_catalog.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from celery import Celery, Task, signals, states
from celery.backends.redis import RedisBackend, SentinelBackend
from celery.exceptions import BackendStoreError
from celery.result import AsyncResult
from kombu.utils.encoding import bytes_to_str

from pkg.redis_sentinel import SentinelUrl, is_sentinel
from pkg.revoke_store import RevokeStore
from pkg.untraced_redis import plumbing_redis_class

# Celery's Redis result backend with fewer round trips, chosen through the backend URL.
RESULT_BACKEND_CLASS = "pkg.celery_task:RedisResultBackend"
SENTINEL_RESULT_BACKEND_CLASS = "pkg.celery_task:SentinelResultBackend"
# kombu's Redis transport with leases (pkg/redis_transport.py), chosen by Celery's
# broker_transport setting; kombu imports it by this path. Its Sentinel variant for
# sentinel:// broker URLs.
LEASED_TRANSPORT = "pkg.redis_transport:Transport"
LEASED_SENTINEL_TRANSPORT = "pkg.redis_transport:SentinelTransport"
# Below this a keeper's renewals (every fifth of a lease) get too close to Redis round trips.
MIN_LEASE_SECONDS = 3.0

# Revokes kept in Redis (pkg/revoke_store.py): a week covers any backlog worth keeping.
REVOKES_KEY = "celery-revoked"
REVOKE_HOLD_SECONDS = 7 * 24 * 3600.0
# Every ready state means the task will not run again; everything else may still change.
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def visibility_window(conf: Any) -> float | None:
    """kombu's visibility timeout when its own transport runs; None with leases (no window)."""
    if conf.broker_transport in (LEASED_TRANSPORT, LEASED_SENTINEL_TRANSPORT):
        return None
    return float(conf.broker_transport_options.get("visibility_timeout", 3600))


def refuse_beyond_visibility(
    conf: Any,
    *,
    name: str,
    countdown: float | None = None,
    eta: dt.datetime | str | None = None,
    time_limit: float | None = None,
) -> None:
    """With kombu's own transport (no leases) Redis hands a message unacked for
    ``visibility_timeout`` to another worker: a task still waiting for its ETA or still running
    then runs twice. Refuse, naming the setting, what would go past it. With leases nothing is
    computed (this runs on every publish)."""
    window = visibility_window(conf)
    if window is None:
        return
    delay = delay_of(countdown, eta)
    for what, seconds in (("countdown/ETA", delay), ("time limit", time_limit)):
        if seconds is not None and seconds >= window:
            raise ValueError(
                f"{name}: {what} of {seconds:.0f} s reaches VISIBILITY_TIMEOUT ({window:.0f} s); "
                "the task would run twice. Raise VISIBILITY_TIMEOUT, or use the leased "
                "transport (BROKER_TRANSPORT=leased), which has no such limit"
            )


def delay_of(countdown: float | None, eta: dt.datetime | str | None) -> float | None:
    """Seconds from now until a countdown or ETA (the later of the two)."""
    if eta is None:
        return countdown
    if isinstance(eta, str):
        eta = dt.datetime.fromisoformat(eta)
    if eta.tzinfo is None:  # Celery reads a naive ETA as UTC (enable_utc)
        eta = eta.replace(tzinfo=dt.UTC)
    return max((eta - dt.datetime.now(dt.UTC)).total_seconds(), countdown or 0)


class BaseTask(Task):  # type: ignore[misc]
    """Base of every task of a CeleryClient's app."""

    # Delay of a retry that names no countdown, worker-loss retries included. Celery's default
    # is 3 minutes: far too long for a task that was merely interrupted by a dying process.
    default_retry_delay = 2

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        # Retries come through here too (``self.retry(countdown=...)``).
        refuse_beyond_visibility(
            self.app.conf,
            name=self.name,
            countdown=options.get("countdown"),
            eta=options.get("eta"),
        )
        return super().apply_async(args, kwargs, **options)


# Store a task's result unless a SUCCESS is already stored, and publish it to waiters: what
# Celery's Redis backend does in two round trips (GET and decode, then MULTI SETEX PUBLISH EXEC),
# here in one, and atomically. KEYS: result key, then optionally a companion key that expires
# with the result. ARGV: encoded meta, expiry in s (0: none).
STORE_RESULT_LUA = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
if tonumber(ARGV[2]) > 0 then
  redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1])
  if KEYS[2] then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
else
  redis.call('SET', KEYS[1], ARGV[1])
  if KEYS[2] then redis.call('PERSIST', KEYS[2]) end
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""
# Celery setting (ours): a key template, e.g. "app:task:{}", of a key kept as long as the task's
# result (in the result backend's Redis), whatever expiry it was written with.
RESULT_COMPANION_KEY = "result_companion_key"


class RedisResultBackend(RedisBackend):  # type: ignore[misc]
    """Celery's Redis result backend with two round trips fewer per task.

    - No pub/sub SUBSCRIBE for every task sent: Celery subscribes the sender to each task's
      result channel in advance, in case it calls ``AsyncResult.get()``. A sender that never
      waits (the API reads state on request) pays a Redis command per task and keeps a
      subscription per task id open. ``get()`` still works: it subscribes when it is called and
      then reads the stored state, so a result that landed in between is not missed.
    - Storing a result is one Lua script (``STORE_RESULT_LUA``) instead of a read, then a
      write; same rule (a stored SUCCESS is never overwritten by a late duplicate), same keys,
      expiry and publish. With the ``result_companion_key`` setting, that key's expiry is set
      to the result's in the same script (an app's own record of the task lives as long).
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def _get_client(self) -> Any:
        return plumbing_redis_class()  # traced only inside a recorded span (a task's run)

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)  # type: ignore[no-untyped-call]
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        expires = self.failure_expires if state == states.FAILURE else self.expires
        key = self.get_key_for_task(task_id)
        companion = self._companion_key
        keys = [key] if not companion else [key, companion.format(bytes_to_str(task_id))]  # type: ignore[no-untyped-call]
        self.ensure(self._store_unless_succeeded, (keys, value, expires or 0))
        return result

    @cached_property
    def _companion_key(self) -> str | None:
        """The ``result_companion_key`` template, read once (results are stored per task)."""
        template = self.app.conf.get(RESULT_COMPANION_KEY)
        return str(template) if template else None

    def _store_unless_succeeded(self, keys: list[Any], value: Any, expires: int) -> None:
        script = self.__dict__.get("_store_script")
        if script is None or script.registered_client is not self.client:
            script = self.__dict__["_store_script"] = self.client.register_script(STORE_RESULT_LUA)
        script(keys=keys, args=[value, int(expires)])


class SentinelResultBackend(RedisResultBackend, SentinelBackend):  # type: ignore[misc]
    """``RedisResultBackend`` on a Sentinel group (Celery's Sentinel backend finds the master:
    ``sentinel://`` URLs and the ``master_name`` in result_backend_transport_options)."""


def with_result_backend_class(url: str) -> str:
    """A result backend URL in the form by which Celery picks a backend class itself
    (``module:Class+url``): ``RedisResultBackend`` for ``redis://`` / ``rediss://`` URLs, and
    ``SentinelResultBackend`` with Celery's own form of a ``sentinel://`` URL."""
    if is_sentinel(url):
        return f"{SENTINEL_RESULT_BACKEND_CLASS}+{SentinelUrl.parse(url).kombu_url()}"
    if url.split("://", 1)[0] in ("redis", "rediss"):
        return f"{RESULT_BACKEND_CLASS}+{url}"
    return url


def sentinel_settings(
    conf: Any, broker_url: str, backend_url: str, sentinel_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """What ``sentinel://`` URLs (``pkg/redis_sentinel.py``) change in Celery's settings: the
    master names and the sentinels' own connection options for the broker and the backend,
    and the Sentinel variant of the leased transport."""
    changes: dict[str, Any] = {}
    if is_sentinel(broker_url):
        options = SentinelUrl.parse(broker_url).transport_options(dict(sentinel_kwargs))
        changes["broker_transport_options"] = {**conf.broker_transport_options, **options}
        if conf.broker_transport == LEASED_TRANSPORT:
            changes["broker_transport"] = LEASED_SENTINEL_TRANSPORT
    if is_sentinel(backend_url):
        options = SentinelUrl.parse(backend_url).transport_options(dict(sentinel_kwargs))
        current = conf.result_backend_transport_options
        changes["result_backend_transport_options"] = {**current, **options}
    return changes


def broker_url_for_kombu(url: str) -> str:
    """kombu's form of a ``sentinel://`` URL; other URLs as they are."""
    return SentinelUrl.parse(url).kombu_url() if is_sentinel(url) else url


class ExitCodeCelery(Celery):  # type: ignore[misc]
    """Celery whose ``worker_main`` returns the worker's exit code.

    Celery's own ``worker_main`` drops the code that ``start`` returns, so a worker that failed
    (broker gone after its retries, a bad option) would look like a clean exit to its launcher.
    """

    def worker_main(self, argv: Sequence[str] | None = None) -> int:
        argv = list(argv) if argv is not None else None
        if argv is not None and "worker" not in argv:
            raise ValueError("The worker sub-command must be specified in argv.")
        code = self.start(argv=argv)
        return int(code or 0)


@dataclass(frozen=True)
class TaskStatus:
    """What a caller can know about one task without importing its code."""

    task_id: str
    state: str
    ready: bool
    result: Any = None
    error: str | None = None
    progress: Mapping[str, Any] | None = None
    date_done: dt.datetime | None = None


@dataclass(frozen=True)
class TaskLimits:
    """Time limits for every task unless a task sets its own, and delivery (seconds).

    ``lease_seconds``: with leases (``LEASED_TRANSPORT``) a live worker renews the lease of
    every message it holds, so a lost worker's tasks come back this long after it is gone,
    while a long task or a far ETA on a live worker is never handed out twice. None selects
    kombu's own Redis transport instead, where ``visibility_timeout`` is how long Redis waits
    for an ack before it hands an unacked task to another worker: it must exceed the longest
    task, or a task still running gets a second copy.
    """

    soft_time_limit: float = 300.0
    time_limit: float = 330.0
    visibility_timeout: float = 3600.0
    lease_seconds: float | None = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.soft_time_limit < self.time_limit:
            raise ValueError("soft_time_limit must be positive and below time_limit")
        if self.lease_seconds is None and self.visibility_timeout <= self.time_limit:
            raise ValueError("visibility_timeout must exceed time_limit (the longest task)")
        if self.lease_seconds is not None and self.lease_seconds < MIN_LEASE_SECONDS:
            raise ValueError(f"lease_seconds must be at least {MIN_LEASE_SECONDS}")


# Seconds to wait for a Redis connection: without a limit, a connect to a host that is gone
# (a killed container whose address still resolves) hangs until the kernel gives up, a minute
# or more, while the worker could already reach the new master after a failover.
CONNECT_TIMEOUT = 2.0
# How long a worker keeps trying to store a result while Redis is away: longer than a restart
# or a Sentinel failover (about 7 s at compose.sentinel.yaml's settings).
RESULT_STORE_RETRY_SECONDS = 30.0


def broker_delivery(limits: TaskLimits) -> dict[str, Any]:
    """The broker transport and how it hands back the tasks of a lost worker."""
    if limits.lease_seconds is None:  # kombu's own transport: one fixed visibility timeout
        return {
            "broker_transport": None,
            "broker_transport_options": {
                "visibility_timeout": limits.visibility_timeout,
                # Look for tasks of dead workers to redeliver every 10 s (kombu's default
                # scans only every 10th sweep: up to 100 s on top of the visibility timeout).
                "unacked_restore_interval": 10,
                "unacked_restore_throttle": 1,
                "socket_connect_timeout": CONNECT_TIMEOUT,
            },
        }
    return {
        "broker_transport": LEASED_TRANSPORT,
        "broker_transport_options": {
            # The lease: how long after its holder is gone a message is handed back.
            "visibility_timeout": limits.lease_seconds,
            # Sweep for run-out leases every 2 s: cheap (Redis TIME and one ZRANGE).
            "unacked_restore_interval": 2,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": CONNECT_TIMEOUT,
        },
    }


def production_defaults(limits: TaskLimits, default_queue: str) -> dict[str, Any]:
    """The Celery settings every app should start from; the reasons are in the README."""
    return {
        **broker_delivery(limits),
        # JSON only: no pickle, so a message from the broker cannot run code in the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_default_queue": default_queue,
        "task_create_missing_queues": True,
        # Results are for callers that poll; keep them a day, not forever.
        "result_expires": dt.timedelta(days=1),
        # Every stored state is a Redis write (and a bigger one with extended results): a
        # STARTED state only for tasks that set track_started (those that run a while), and no
        # extended fields, which a caller that submitted the task already knows.
        "result_extended": False,
        "task_track_started": False,
        "task_soft_time_limit": limits.soft_time_limit,
        "task_time_limit": limits.time_limit,
        # Wait for the broker at start (with retries) instead of crashing in a loop.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": 2.0,
        # Reliable delivery: ack after the task ran, and give a task back to the queue if the
        # process running it died. At-least-once: tasks must be idempotent.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # ...but a task that kills its process every time (a segfault, an OOM) must not be
        # redelivered forever: retry it as a new message counted against the task's
        # max_retries (default 3), then record FAILURE (WorkerLostError).
        "task_retry_on_worker_lost": True,
        # Celery's default: four reserved messages per process, so the worker fetches several
        # at once and no process waits on a fetch. Reserved messages are leased like running
        # ones (a lost worker's come back); set 1 for workers of long tasks, whose reserved
        # messages would otherwise wait behind them while another worker idles.
        "worker_prefetch_multiplier": 4,
        # Giving up sooner would lose the result of a task that ran (and was acked).
        "result_backend_transport_options": {
            "retry_policy": {"timeout": RESULT_STORE_RETRY_SECONDS}
        },
        "redis_socket_connect_timeout": CONNECT_TIMEOUT,
        # A publish to a broker that is down fails in about a second instead of hanging.
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Task events (received/started/succeeded, and sent from the client) are what Flower's
        # task list shows, at three or four extra publishes a task. Off by default: Flower
        # switches them on in the workers it watches; an app can turn them on for good.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }


class CeleryClient:
    """Owns one Celery app: its configuration, and how callers submit and inspect tasks."""

    def __init__(
        self,
        name: str,
        *,
        broker_url: str,
        backend_url: str | None = None,
        include: Iterable[str] = (),
        default_queue: str = "default",
        routes: Mapping[str, Mapping[str, Any]] | None = None,
        beat_schedule: Mapping[str, Mapping[str, Any]] | None = None,
        limits: TaskLimits | None = None,
        overrides: Mapping[str, Any] | None = None,
        sentinel_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """``broker_url`` and ``backend_url``: ``redis://``, ``rediss://`` or ``sentinel://``
        (``pkg/redis_sentinel.py``; ``sentinel_kwargs``: how to talk to the sentinels)."""
        self.default_queue = default_queue
        self.limits = limits or TaskLimits()
        self.app = ExitCodeCelery(
            name,
            broker=broker_url_for_kombu(broker_url),
            backend=with_result_backend_class(backend_url or broker_url),
            include=list(include),
            task_cls=BaseTask,
            # Task events published a few times a second (pkg/task_events.py).
            events="pkg.task_events:ThrottledEvents",
            set_as_current=False,
        )
        self.app.conf.update(production_defaults(self.limits, default_queue))
        self.app.conf.update(
            sentinel_settings(
                self.app.conf, broker_url, backend_url or broker_url, sentinel_kwargs or {}
            )
        )
        self.app.conf.task_routes = dict(routes or {})
        self.app.conf.beat_schedule = dict(beat_schedule or {})
        self.app.conf.update(dict(overrides or {}))

    # -- submitting -------------------------------------------------------------------------
    def submit(
        self,
        *,
        task_name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
    ) -> AsyncResult:
        """Send a task by name. An explicit ``queue`` beats the routes; without one the routes
        decide, then the default queue."""
        refuse_beyond_visibility(self.app.conf, name=task_name, countdown=countdown, eta=eta)
        options: dict[str, Any] = {}
        if queue is not None:
            options["queue"] = queue
        if priority is not None:
            options["priority"] = priority
        return self.app.send_task(
            task_name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            task_id=task_id,
            countdown=countdown,
            eta=eta,
            **options,
        )

    def submit_many(
        self,
        *,
        task_name: str,
        kwargs: Iterable[Mapping[str, Any]],
        queue: str | None = None,
    ) -> list[str]:
        """Send one task per ``kwargs`` entry and return their ids in order: one producer for the
        batch, and kombu's publish batch (one pipelined round trip per 1,000 messages).

        The queue is declared by the first send only: routes here map task names to queues,
        so every message of the batch goes to the same one, and kombu would otherwise copy and
        bind the queue entity again for each message (a fifth of the publishing CPU).
        """
        options: dict[str, Any] = {} if queue is None else {"queue": queue}
        ids = []
        with self.app.producer_or_acquire() as producer, producer.batch():
            for kw in kwargs:
                sent = self.app.send_task(task_name, kwargs=dict(kw), producer=producer, **options)
                ids.append(sent.id)
                options["declare"] = []
        return ids

    # -- inspecting -------------------------------------------------------------------------
    def status(self, task_id: str) -> TaskStatus:
        """State, result or error, progress meta and completion time of one task."""
        return task_status(task_id, self.app.backend.get_task_meta(task_id))

    # For callers that read the result backend (Redis) themselves, e.g. with an async client.
    def result_key(self, task_id: str) -> str:
        """The backend key (and pub/sub channel) where a task's state is stored."""
        key = self.app.backend.get_key_for_task(task_id)
        return key.decode() if isinstance(key, bytes) else str(key)

    def status_from_stored(self, task_id: str, stored: bytes | str | None) -> TaskStatus:
        """``status`` from the raw value stored at ``result_key`` (None: nothing stored yet)."""
        if not stored:
            return task_status(task_id, {"status": "PENDING", "result": None})
        return task_status(task_id, self.app.backend.decode_result(stored))

    def revoke(self, task_id: str, *, terminate: bool = False, signal: str = "SIGTERM") -> None:
        """Revoke a task: queued copies are skipped, also by workers that start or reconnect
        later (``keep_revokes``); with ``terminate`` a running one is signalled too (its
        process is killed, so only use it for tasks safe to cut short)."""
        self.revokes.add(task_id)
        self.app.control.revoke(task_id, terminate=terminate, signal=signal)

    @cached_property
    def revokes(self) -> RevokeStore:
        """Revokes kept in the result backend's Redis for ``REVOKE_HOLD_SECONDS``."""
        return RevokeStore(
            self.app.backend.client, key=REVOKES_KEY, hold_seconds=REVOKE_HOLD_SECONDS
        )

    def keep_revokes(self) -> None:
        """In a worker: copy the revokes kept in Redis into Celery's own revoke list before
        it consumes, then whenever they change (checked at each heartbeat, every 2 s)."""

        def copy(**_: Any) -> None:
            from celery.worker import state  # the list Celery's revoke command adds to

            self.revokes.copy_into(state.revoked)

        signals.worker_init.connect(copy, weak=False)
        signals.heartbeat_sent.connect(copy, weak=False)

    def ping_workers(self, timeout: float = 1.0) -> list[str]:
        """Names of the workers that answered a ping within ``timeout`` seconds."""
        replies = self.app.control.ping(timeout=timeout) or []
        return sorted(name for reply in replies for name in reply)

    def refuse_limits_beyond_visibility(self) -> None:
        """Check every task's time limit against kombu's visibility timeout (nothing to check
        with leases); a worker calls this before it starts, and refuses to if one reaches it."""
        if visibility_window(self.app.conf) is None:
            return  # leases: no need to import the task modules here
        self.app.loader.import_default_modules()
        for task in self.app.tasks.values():
            limit = task.time_limit or self.app.conf.task_time_limit
            refuse_beyond_visibility(self.app.conf, name=task.name, time_limit=limit)

    def ping_broker(self, timeout: float = 1.0) -> None:
        """Raise if the broker does not accept a connection within ``timeout`` seconds."""
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)

    @staticmethod
    def write_liveness_file(path: Path) -> None:
        """Touch ``path`` at every worker heartbeat (every 2 s while the consumer runs with a
        broker connection), so a container healthcheck can test the file's age instead of
        paying for a Celery ping."""

        def touch(**_: Any) -> None:
            path.touch()

        signals.heartbeat_sent.connect(touch, weak=False)

    # -- per-process resources --------------------------------------------------------------
    @staticmethod
    def on_worker_process_start(hook: Callable[[], None]) -> Callable[[], None]:
        """Run ``hook`` in every worker process after it starts (pool children included):
        the place to open connection pools, which must not be shared across ``fork``."""
        signals.worker_process_init.connect(lambda **_: hook(), weak=False)
        return hook

    @staticmethod
    def on_worker_process_shutdown(hook: Callable[[], None]) -> Callable[[], None]:
        """Run ``hook`` in every worker process before it exits."""
        signals.worker_process_shutdown.connect(lambda **_: hook(), weak=False)
        return hook


def task_status(task_id: str, meta: Mapping[str, Any]) -> TaskStatus:
    state = str(meta.get("status", "PENDING"))
    payload = meta.get("result")
    result = error = progress = None
    if state == "SUCCESS":
        result = payload
    elif state in ("FAILURE", "RETRY", "REVOKED"):
        error = _describe_error(payload)
    elif isinstance(payload, dict):
        progress = payload
    return TaskStatus(
        task_id=task_id,
        state=state,
        ready=state in READY_STATES,
        result=result,
        error=error,
        progress=progress,
        date_done=_as_datetime(meta.get("date_done")),
    )


def _describe_error(payload: Any) -> str | None:
    if payload is None:
        return None
    if isinstance(payload, BaseException):
        return f"{type(payload).__name__}: {payload}"
    if isinstance(payload, dict) and "exc_type" in payload:
        message = payload.get("exc_message")
        if isinstance(message, list | tuple):
            message = ", ".join(str(m) for m in message)
        return f"{payload['exc_type']}: {message}"
    return str(payload)


def _as_datetime(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
