"""Builds this app's CeleryClient from settings and the task catalog (routes, beat schedule and
task modules all follow from the tasks' declarations)."""

from __future__ import annotations

from internal.config.setting import Settings
from internal.infra.redis import DEAD_LETTERS_KEY, SUBMITTED_TASK_KEY, get_redis, reset_redis
from internal.tasks.celery.queues import DEFAULT_QUEUE
from pkg.celery_task import RESULT_COMPANION_KEY, CeleryClient, TaskLimits
from pkg.dead_letters import DeadLetters
from pkg.queue_metrics import stamp_publish_time
from pkg.task_catalog import TaskCatalog

# The modules that declare this app's tasks: a module of tasks is added here, nothing else.
TASKS = TaskCatalog(DEFAULT_QUEUE, modules=("internal.tasks.celery.tasks",))


def build_celery_client(settings: Settings, tasks: TaskCatalog = TASKS) -> CeleryClient:
    client = CeleryClient(
        "app",
        broker_url=settings.broker_url,
        backend_url=settings.result_backend,
        include=tasks.modules,
        default_queue=tasks.default_queue,
        routes=tasks.routes(),
        beat_schedule=tasks.beat_schedule(settings),
        limits=TaskLimits(
            soft_time_limit=settings.task_soft_time_limit,
            time_limit=settings.task_time_limit,
            visibility_timeout=settings.visibility_timeout,
            lease_seconds=settings.lease_seconds if settings.broker_transport == "leased" else None,
        ),
        overrides={
            "worker_concurrency": settings.worker_concurrency,
            "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
            "worker_send_task_events": settings.worker_task_events,
            # rediss://: the same TLS files for the broker and the backend as for every client.
            "broker_use_ssl": settings.redis_tls(settings.broker_url) or None,
            "redis_backend_use_ssl": settings.redis_tls(settings.result_backend) or None,
            # The API's record of a task expires with the task's result (same Redis only).
            RESULT_COMPANION_KEY: SUBMITTED_TASK_KEY
            if settings.app_redis_url == settings.result_backend
            else None,
        },
        sentinel_kwargs=settings.sentinel_kwargs(),
    )
    # Each worker process opens its own Redis connections after fork, and closes them at exit.
    client.on_worker_process_start(reset_redis)
    client.on_worker_process_shutdown(reset_redis)
    client.write_liveness_file(settings.worker_liveness_file)
    client.keep_revokes()
    stamp_publish_time()  # the queues' oldest-message age reads it (internal/infra/metrics.py)
    dead_letter_box(settings).keep(client.app, get_redis)
    return client


def dead_letter_box(settings: Settings) -> DeadLetters:
    """Where tasks that failed for good are kept (the app's Redis), and how many."""
    return DeadLetters(DEAD_LETTERS_KEY, max_entries=settings.dead_letters_max)
