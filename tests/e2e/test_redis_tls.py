"""Redis across hosts: TLS with client certificates and an ACL user of the app's own, the
default user disabled. Redis is the compose image (Docker), with the TLS flags and the app
user's rights compose.tls.yaml gives it (deploy/redis-tls/); the worker, beat, API, Flower and
the healthchecks run as real processes against it with ``rediss://app@...``, and the refusals
are checked with redis-py."""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError
from redis.retry import Retry

from tests.conftest import LaunchFn, node_name, start_worker
from tests.support.processes import REPO_ROOT, free_port, healthcheck, wait_until
from tests.support.stack import Stack, require_docker
from tests.support.stack_fixtures import write_secrets

pytestmark = pytest.mark.e2e
IMAGE = os.environ.get("REDIS_IMAGE", "redis:8.0-alpine")
TLS_DIR = REPO_ROOT / "deploy" / "redis-tls"
APP_PASSWORD = "app-pw-for-tests"
NO_RETRY = Retry(NoBackoff(), 0)  # a refusal is the answer: no second try


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(where: Path) -> None:
    """A CA, Redis's certificate (for 127.0.0.1 and redis-prod) and the app's client one,
    named as compose.tls.yaml's secrets."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "redis_ca_crt", cwd=where)  # fmt: skip
    for name, san in (
        ("server", "IP:127.0.0.1,DNS:localhost,DNS:redis-prod"),
        ("client", "DNS:app"),
    ):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"redis_{name}_key", "-out", f"{name}.csr", cwd=where)  # fmt: skip
        (where / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "redis_ca_crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext",
                "-out", f"redis_{name}_crt", cwd=where)  # fmt: skip
    for path in where.iterdir():
        path.chmod(0o644)  # readable by the container's redis user (test keys only)


@dataclass
class TlsRedis:
    port: int
    certs: Path

    def url(self, db: int = 0) -> str:
        return f"rediss://app@127.0.0.1:{self.port}/{db}"

    def env(self, db: int = 0) -> dict[str, str]:
        return {
            "REDIS_URL": self.url(db=db),
            "REDIS_PASSWORD": APP_PASSWORD,
            "REDIS_TLS_CA_FILE": str(self.certs / "redis_ca_crt"),
            "REDIS_TLS_CERT_FILE": str(self.certs / "redis_client_crt"),
            "REDIS_TLS_KEY_FILE": str(self.certs / "redis_client_key"),
        }

    def client(self, **kw: object) -> redis.Redis:
        options: dict[str, object] = {
            "host": "127.0.0.1", "port": self.port, "ssl": True,
            "ssl_ca_certs": str(self.certs / "redis_ca_crt"), "ssl_cert_reqs": ssl.CERT_REQUIRED,
            "ssl_certfile": str(self.certs / "redis_client_crt"),
            "ssl_keyfile": str(self.certs / "redis_client_key"), "socket_timeout": 5,
            "retry": NO_RETRY,
        }  # fmt: skip
        options.update(kw)
        return redis.Redis(**options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    require_docker()
    certs = tmp_path_factory.mktemp("tls")
    make_certificates(certs)
    rights = (TLS_DIR / "app-user.rights").read_text().strip()
    (certs / "users.acl").write_text(f"user default off\nuser app on >{APP_PASSWORD} {rights}\n")
    (certs / "users.acl").chmod(0o644)
    port = free_port()
    name = f"redis-tls-test-{port}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:6379",
         "-v", f"{certs}:/tls:ro", IMAGE, "redis-server", "--aclfile", "/tls/users.acl",
         *redis_tls_flags()],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = TlsRedis(port, certs)
    try:
        wait_until(
            lambda: server.client(username="app", password=APP_PASSWORD).ping(),
            timeout=30,
            what="Redis over TLS",
        )
        yield server
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def redis_tls_flags() -> list[str]:
    """The flags compose.tls.yaml gives redis-server, the files under /tls."""
    flags = (TLS_DIR / "redis-tls.flags").read_text().split()
    return [f.replace("/run/secrets/", "/tls/") for f in flags]


def test_the_stack_works_over_tls_as_its_own_user(launch: LaunchFn, tls_redis: TlsRedis) -> None:
    env = tls_redis.env()
    start_worker(launch, node_name("tls"), "-l", "info", "-Q", "default,slow", env=env)
    port = free_port()
    launch("run_api.py", "--port", str(port), env=env)
    api = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{api}/readyz").status_code == 200, timeout=30, what="the API")
    answer = httpx.post(f"{api}/api/v1/tasks/add", json={"x": 20, "y": 22})
    assert answer.status_code == 202, answer.text
    done = httpx.get(f"{answer.json()['status_url']}?wait=20", timeout=30).json()
    assert (done["state"], done["result"]) == ("SUCCESS", 42)

    # Beat: its heartbeat lands, and its healthcheck reads it, over TLS.
    beat_env = {**env, "HEARTBEAT_INTERVAL_SECONDS": "1"}
    launch("run_celery_beat.py", env=beat_env).wait_for_output("Sending due task heartbeat")
    wait_until(lambda: healthcheck("beat", beat_env) == 0, timeout=20, what="beat healthy")

    # Flower: its broker connection and the app's gauges (queue lengths, Redis memory).
    flower_port = free_port()
    launch("run_flower.py", f"--port={flower_port}", env=env)

    def scraped() -> str | None:
        page = httpx.get(f"http://127.0.0.1:{flower_port}/metrics")
        return (
            page.text
            if page.status_code == 200 and "redis_memory_used_bytes" in page.text
            else None
        )

    metrics = wait_until(scraped, timeout=30, what="Flower's metrics over TLS")
    assert 'celery_queue_length{queue="default"}' in metrics


def test_plaintext_is_refused(tls_redis: TlsRedis) -> None:
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=tls_redis.port, socket_timeout=2, retry=NO_RETRY).ping()


def test_a_client_without_a_certificate_is_refused(tls_redis: TlsRedis) -> None:
    with pytest.raises(redis.ConnectionError):
        tls_redis.client(
            username="app", password=APP_PASSWORD, ssl_certfile=None, ssl_keyfile=None
        ).ping()


def test_the_default_user_is_refused(tls_redis: TlsRedis) -> None:
    with pytest.raises(redis.AuthenticationError):
        tls_redis.client(password=APP_PASSWORD).ping()  # AUTH as the default user
    with pytest.raises(redis.AuthenticationError):
        tls_redis.client().ping()  # no AUTH at all: the default user, switched off


def test_the_app_user_cannot_administer_redis(tls_redis: TlsRedis) -> None:
    app = tls_redis.client(username="app", password=APP_PASSWORD)
    for command in (("CONFIG", "SET", "appendonly", "no"), ("FLUSHALL",), ("ACL", "LIST")):
        with pytest.raises(NoPermissionError):
            app.execute_command(*command)  # type: ignore[no-untyped-call]


def test_compose_tls_redis_serves_the_app_user_over_tls_only(tmp_path: Path) -> None:
    """compose.tls.yaml's own redis-prod (its start script makes the ACL from the secret):
    the app user over TLS, nothing else."""
    require_docker()
    write_secrets(tmp_path, redis_password=APP_PASSWORD)  # makes secrets/, mode 700
    make_certificates(tmp_path / "secrets")
    port = free_port()
    stack = Stack(Path(REPO_ROOT), profile="prod", env={
        "COMPOSE_FILE": "compose.yaml:compose.tls.yaml", "SECRETS_DIR": str(tmp_path / "secrets"),
        "REDIS_PORT": str(port),
    })  # fmt: skip
    try:
        stack.compose("up", "-d", "--wait", "redis-prod", timeout=120)
        server = TlsRedis(port, tmp_path / "secrets")
        assert server.client(username="app", password=APP_PASSWORD).ping()
        with pytest.raises(redis.AuthenticationError):
            server.client(password=APP_PASSWORD).ping()
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=port, socket_timeout=2, retry=NO_RETRY).ping()
        assert (
            APP_PASSWORD not in stack.compose("exec", "redis-prod", "cat", "/tmp/users.acl").stdout
        )
    finally:
        stack.down()
