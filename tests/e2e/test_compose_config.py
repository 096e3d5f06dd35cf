"""What `docker compose config` says, for dev and prod: one broker, queues consumed, no secrets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from internal.config.setting import Settings
from pkg.redis_sentinel import SentinelUrl
from tests.support.processes import REPO_ROOT
from tests.support.stack import Stack, require_docker
from tests.support.stack_fixtures import FLOWER_PASSWORD, REDIS_PASSWORD, write_secrets

CELERY_SPEAKING = ("api", "worker", "beat", "flower")
BROKER_KEYS = ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "APP_ENV")


@pytest.fixture(scope="module", autouse=True)
def _docker() -> None:
    require_docker()


@pytest.mark.parametrize(("profile", "suffix"), [("dev", ""), ("prod", "-prod")])
def test_every_celery_service_reads_the_same_broker(profile: str, suffix: str) -> None:
    config = Stack(Path(REPO_ROOT), profile=profile).config()
    services = config["services"]
    expected = {f"{name}{suffix}" for name in ("redis", *CELERY_SPEAKING)}
    assert set(services) - {"redis-prod-volume", "prometheus-prod"} == expected
    seen = {
        name: {k: services[f"{name}{suffix}"]["environment"].get(k) for k in BROKER_KEYS}
        for name in CELERY_SPEAKING
    }
    assert seen["api"]["REDIS_URL"], "REDIS_URL must be set"
    for name in CELERY_SPEAKING:
        assert seen[name] == seen["api"], f"{name} differs from api: {seen}"
    worker = services[f"worker{suffix}"]
    # Every queue a task is declared on (the launcher expands "*"; test_wiring checks that).
    assert worker["environment"]["WORKER_QUEUES"] == "*"
    assert "-Q" not in (worker.get("command") or []), "the compose worker must consume every queue"


@pytest.mark.parametrize(("profile", "suffix"), [("dev", ""), ("prod", "-prod")])
def test_an_otlp_endpoint_set_on_the_host_reaches_every_traced_service(
    profile: str, suffix: str
) -> None:
    stack = Stack(Path(REPO_ROOT), profile=profile)
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    services = json.loads(stack.compose("config", "--format", "json", env=endpoint).stdout)[
        "services"
    ]
    for name in ("api", "worker", "beat"):
        environment = services[f"{name}{suffix}"]["environment"]
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318", name
    assert services[f"worker{suffix}"]["environment"]["WORKER_QUEUES"] == "*"
    # The API's metrics port is the stack's own: only the API port is published.
    api = services[f"api{suffix}"]
    assert api["environment"]["API_METRICS_PORT"] == "9100"
    assert [p["target"] for p in api["ports"]] == [8000]


def test_prod_config_shows_no_secret_values(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "compose.yaml", tmp_path)
    for name in (".env", ".env.dev", ".env.prod"):
        shutil.copy(REPO_ROOT / name, tmp_path)
    write_secrets(tmp_path)
    result = Stack(tmp_path, profile="prod").compose("config")
    assert "redis_password" in result.stdout
    assert REDIS_PASSWORD not in result.stdout
    assert FLOWER_PASSWORD not in result.stdout


@pytest.mark.parametrize("missing", ["redis_password", "flower_basic_auth"])
def test_prod_refuses_to_start_without_its_secrets(images: Path, missing: str) -> None:
    write_secrets(images, **{missing: None})
    stack = Stack(images, profile="prod")
    try:
        result = stack.compose("up", "-d", "--no-build", check=False, timeout=120)
    finally:
        stack.down()
    assert result.returncode != 0
    assert f"bind source path does not exist: {images}/secrets/{missing}" in result.stderr


def test_prod_refuses_an_empty_redis_password(images: Path) -> None:
    write_secrets(images, redis_password="")
    stack = Stack(images, profile="prod")
    try:
        result = stack.compose(
            "up", "-d", "--wait", "--no-build", "redis-prod", check=False, timeout=120
        )
        logs = stack.logs("redis-prod")
    finally:
        stack.down()
    assert result.returncode != 0
    assert "secrets/redis_password is empty: refusing to start" in logs


def test_dev_ports_answer_this_machine_only_unless_opened() -> None:
    """Regression (issue 10, open doors): dev published the API and Flower (whose API can send
    any task and shut workers down) on every interface."""
    cases: list[tuple[dict[str, str | None], str]] = [
        ({"DEV_BIND_ADDRESS": None}, "127.0.0.1"),
        ({"DEV_BIND_ADDRESS": "0.0.0.0"}, "0.0.0.0"),
    ]
    for env, expected in cases:
        services = Stack(Path(REPO_ROOT), profile="dev", env=env).config()["services"]
        published = {
            name: [port.get("host_ip") for port in spec.get("ports", [])]
            for name, spec in services.items()
        }
        assert published["api"] == [expected] and published["flower"] == [expected], published
        assert not any(published[name] for name in ("redis", "worker", "beat")), published


@pytest.mark.parametrize(("profile", "suffix"), [("dev", ""), ("prod", "-prod")])
def test_docker_waits_for_the_api_to_drain(profile: str, suffix: str) -> None:
    """Regression (issue 10, promises): uvicorn's graceful shutdown was as long as compose's
    default stop grace (10 s), so Docker could kill the API while it drained."""
    from services.run_api import GRACEFUL_SHUTDOWN_SECONDS

    api = Stack(Path(REPO_ROOT), profile=profile).config()["services"][f"api{suffix}"]
    grace = api.get("stop_grace_period", "10s")
    assert grace.endswith("s") and float(grace[:-1]) >= GRACEFUL_SHUTDOWN_SECONDS + 3, grace


TLS_SECRETS = ("redis_ca_crt", "redis_server_crt", "redis_server_key", "redis_client_crt",
               "redis_client_key")  # fmt: skip


def test_the_tls_variant_gives_every_client_tls_as_the_app_user(tmp_path: Path) -> None:
    """compose.tls.yaml over the prod stack (tests/e2e/test_redis_tls.py runs its Redis)."""
    write_secrets(tmp_path, **dict.fromkeys(TLS_SECRETS, "placeholder"))
    stack = Stack(Path(REPO_ROOT), profile="prod", env={
        "COMPOSE_FILE": "compose.yaml:compose.tls.yaml", "SECRETS_DIR": str(tmp_path / "secrets"),
    })  # fmt: skip
    services = stack.config()["services"]
    for name in CELERY_SPEAKING:
        service = services[f"{name}-prod"]
        environment = service["environment"]
        assert environment["REDIS_URL"] == "rediss://app@redis-prod:6379/0", name
        mounted = {s["source"] for s in service["secrets"]}
        assert {"redis_password", "redis_ca_crt", "redis_client_crt", "redis_client_key"} <= mounted
        for key in ("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"):
            assert environment[key].removeprefix("/run/secrets/") in mounted, (name, key)
    redis = services["redis-prod"]
    assert "--aclfile /tmp/users.acl" in redis["command"][-1]
    assert {"/data", "/etc/redis-tls"} <= {v["target"] for v in redis["volumes"]}
    # Published for other hosts, but on loopback until REDIS_BIND_ADDRESS opens it.
    assert [(p["host_ip"], p["target"]) for p in redis["ports"]] == [("127.0.0.1", 6379)]


def test_the_sentinel_variant_points_every_client_at_the_sentinels(tmp_path: Path) -> None:
    """compose.sentinel.yaml over the prod stack (bench/sentinel_failover.py runs it)."""
    write_secrets(tmp_path)
    stack = Stack(Path(REPO_ROOT), profile="prod", env={
        "COMPOSE_FILE": "compose.yaml:compose.sentinel.yaml",
        "SECRETS_DIR": str(tmp_path / "secrets"),
    })  # fmt: skip
    services = stack.config()["services"]
    sentinels = {f"sentinel-{i}-prod" for i in (1, 2, 3)}
    assert sentinels | {"redis-prod", "redis-replica-prod"} <= set(services)
    url = Settings(redis_url=services["api-prod"]["environment"]["REDIS_URL"]).redis_url
    target = SentinelUrl.parse(url)
    assert {host for host, _ in target.sentinels} == sentinels and target.master_name == "mymaster"
    for name in CELERY_SPEAKING:
        service = services[f"{name}-prod"]
        assert service["environment"]["REDIS_URL"] == url, name
        assert sentinels <= set(service["depends_on"]), name
        targets = {s["target"] for s in service["secrets"]}
        assert {"/run/secrets/redis_password", "redis_sentinel_password"} <= targets, name
    for name in sentinels:
        command = services[name]["command"][-1]
        assert f"sentinel monitor {target.master_name} redis-prod 6379 2" in command
        assert services[name]["read_only"] and services[name]["cap_drop"] == ["ALL"]
    replica = services["redis-replica-prod"]
    assert replica["environment"]["REPLICA_OF"] == "redis-prod"
    assert replica["command"] == services["redis-prod"]["command"]  # one start script
