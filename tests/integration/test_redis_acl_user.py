"""A Redis ACL user named in REDIS_URL, with the password from REDIS_PASSWORD (or its secret
file), authenticates as that user for every client: broker, result backend, the app's keys.

Regression (issue 10, defect 4): ``redis://app@host/0`` plus the password became
``redis://app:pw@app@host/0``; the password parsed as ``pw@app`` and AUTH failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from internal.config.setting import Settings
from internal.infra.celery import build_celery_client
from tests.support.processes import Redis

PASSWORD = "p@ss:w/rd"  # characters a URL must escape


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(tmp_path_factory.mktemp("acl-redis"))
    admin = redis.Redis(port=server.port)
    admin.acl_setuser(
        "app",
        enabled=True,
        passwords=[f"+{PASSWORD}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    yield server
    server.stop()


def test_a_user_in_the_url_gets_the_password_after_it(acl_redis: Redis) -> None:
    url = f"redis://app@127.0.0.1:{acl_redis.port}/0"
    settings = Settings(redis_url=url, redis_password=PASSWORD)
    for authed in (settings.broker_url, settings.result_backend, settings.app_redis_url):
        client = redis.Redis.from_url(authed)
        assert client.acl_whoami() == "app"
        client.close()
    assert "p%40ss" not in str(settings.describe()) and "***" in settings.describe()["broker"]


def test_celery_connects_as_the_acl_user(acl_redis: Redis) -> None:
    url = f"redis://app@127.0.0.1:{acl_redis.port}/0"
    client = build_celery_client(Settings(redis_url=url, redis_password=PASSWORD))
    client.ping_broker(timeout=2.0)
    assert client.status("no-such-task").state == "PENDING"  # the backend reads as the user
