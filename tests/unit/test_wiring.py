"""Queues, routes, beat entries and public tasks agree with each other and with the worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from internal.config.setting import Settings
from internal.infra.celery import TASKS, build_celery_client
from internal.tasks.celery import queues
from pkg.celery_task import (
    LEASED_TRANSPORT,
    CeleryClient,
    ExitCodeCelery,
    RedisResultBackend,
    TaskLimits,
)
from services import run_celery_beat, run_celery_worker
from services.launcher import split_reload_flag


@pytest.fixture(scope="module")
def registered() -> set[str]:
    client = build_celery_client(Settings())
    client.app.loader.import_default_modules()
    return set(client.app.tasks)


def test_worker_default_argv_is_the_documented_one() -> None:
    assert run_celery_worker.default_argv("default", 4) == [
        "worker", "-Q", "default", "-l", "debug", "--pool", "prefork", "--concurrency", "4",
    ]  # fmt: skip


def test_every_routed_queue_is_consumed_by_the_documented_worker_command() -> None:
    # The compose worker (and the README) run the launcher with WORKER_QUEUES=*: every queue.
    assert TASKS.queues() == (queues.DEFAULT_QUEUE, queues.SLOW_QUEUE)
    for task_name, route in TASKS.routes().items():
        assert route["queue"] in TASKS.queues(), task_name


def test_worker_queues_setting_names_the_queues_to_consume() -> None:
    declared = TASKS.queues()
    assert run_celery_worker.queues_to_consume(None, "default", declared) == "default"
    assert run_celery_worker.queues_to_consume("*", "default", declared) == "default,slow"
    assert run_celery_worker.queues_to_consume("slow", "default", declared) == "slow"
    with pytest.raises(ValidationError, match="worker_queues"):
        Settings(worker_queues="default, slow")


def test_default_queue_is_the_launchers() -> None:
    client = build_celery_client(Settings())
    assert client.app.conf.task_default_queue == queues.DEFAULT_QUEUE


def test_routes_beat_and_public_tasks_name_registered_tasks(registered: set[str]) -> None:
    client = build_celery_client(Settings())
    named = set(TASKS.routes())
    named |= {entry["task"] for entry in client.app.conf.beat_schedule.values()}
    named |= {task.name for task in TASKS.public().values()}
    assert named - registered == set()


def test_public_tasks_are_only_the_listed_ones(registered: set[str]) -> None:
    public = {task.name for task in TASKS.public().values()}
    assert "celery.backend_cleanup" in registered and "celery.backend_cleanup" not in public
    assert public == {"tasks.add", "tasks.long_report", "tasks.flaky_fetch", "tasks.record_order"}


def test_reload_flag_is_the_launchers_own() -> None:
    assert split_reload_flag(["-l", "info", "--reload"]) == (True, ["-l", "info"])
    assert split_reload_flag(["--reload", "--no-reload"]) == (False, [])
    assert split_reload_flag(["-Q", "slow"]) == (None, ["-Q", "slow"])


def test_beat_schedule_file_lives_in_the_configured_dir() -> None:
    argv = run_celery_beat.default_argv(Path("/var/lib/celery/beat"))
    assert argv[argv.index("--schedule") + 1] == "/var/lib/celery/beat/celerybeat-schedule"


def test_client_defaults_are_production_grade() -> None:
    conf = CeleryClient("t", broker_url="redis://localhost/0").app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.accept_content == ["json"]
    assert conf.broker_connection_retry_on_startup
    # Leases by default: the visibility timeout is the lease, renewed while the worker lives.
    assert conf.broker_transport == LEASED_TRANSPORT
    assert conf.broker_transport_options["visibility_timeout"] == TaskLimits().lease_seconds
    # kombu's own transport: one fixed timeout, which must outlast the longest task.
    stock = CeleryClient(
        "t", broker_url="redis://localhost/0", limits=TaskLimits(lease_seconds=None)
    ).app.conf
    assert stock.broker_transport is None
    assert stock.broker_transport_options["visibility_timeout"] > stock.task_time_limit
    # A connect to a Redis that is gone fails in seconds (bench/sentinel_failover.py: without
    # it, the worker hung 70 s on the dead master's address after a failover).
    for c in (conf, stock):
        assert c.broker_transport_options["socket_connect_timeout"] == 2.0
        assert c.redis_socket_connect_timeout == 2.0


def test_limits_refuse_a_visibility_timeout_shorter_than_a_task() -> None:
    with pytest.raises(ValueError, match="visibility_timeout must exceed"):
        TaskLimits(soft_time_limit=10, time_limit=20, visibility_timeout=15, lease_seconds=None)
    # With leases the visibility timeout is not used: nothing to refuse.
    TaskLimits(soft_time_limit=10, time_limit=20, visibility_timeout=15)


def test_task_events_are_a_setting() -> None:
    assert not build_celery_client(Settings()).app.conf.worker_send_task_events
    events_on = build_celery_client(Settings(worker_task_events=True)).app.conf
    assert events_on.worker_send_task_events


def test_the_result_backend_class_is_chosen_through_celerys_own_setting() -> None:
    """``module:Class+redis://…``: Celery picks the class itself (no copied private method)."""
    app = build_celery_client(Settings(redis_url="redis://redis:6379/2")).app
    assert app.conf.result_backend == "pkg.celery_task:RedisResultBackend+redis://redis:6379/2"
    assert type(app.backend) is RedisResultBackend
    assert app.backend.as_uri() == "redis://redis:6379/2"
    assert "_get_backend" not in vars(ExitCodeCelery)


def test_a_sentinel_url_selects_the_sentinel_variants_by_configuration() -> None:
    """``sentinel://``: kombu's form of the URL, the leased transport's Sentinel variant and
    the result backend's, each chosen through Celery's own settings, with the master name."""
    settings = Settings(redis_url="sentinel://s1:26379,s2:26379/mymaster/1")
    conf = build_celery_client(settings).app.conf
    assert conf.broker_url == "sentinel://s1:26379/1;sentinel://s2:26379/1"
    assert conf.broker_transport == "pkg.redis_transport:SentinelTransport"
    assert conf.result_backend == (
        "pkg.celery_task:SentinelResultBackend+sentinel://s1:26379/1;sentinel://s2:26379/1"
    )
    for options in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert options["master_name"] == "mymaster"
        assert options["sentinel_kwargs"] == settings.sentinel_kwargs()
    assert conf.broker_transport_options["visibility_timeout"] == settings.lease_seconds
    stock = build_celery_client(settings.model_copy(update={"broker_transport": "kombu"}))
    assert stock.app.conf.broker_transport is None  # kombu's own Sentinel transport
