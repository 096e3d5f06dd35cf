"""Application settings, read once from the environment (and the env file APP_ENV names).

Precedence, highest first: real environment variables, then ``.env.<APP_ENV>`` in the repo root,
then the defaults below. ``REDIS_URL`` is the single source of the broker and the result backend;
``CELERY_BROKER_URL`` / ``CELERY_RESULT_BACKEND`` override them only when set explicitly.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    Field,
    FilePath,
    PositiveFloat,
    PositiveInt,
    RedisDsn,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pkg.redis_sentinel import SentinelUrl, is_sentinel

REPO_ROOT = Path(__file__).resolve().parents[2]
# Docker secrets (compose `secrets:`): one file per setting, e.g. /run/secrets/redis_password.
SECRETS_DIR = Path("/run/secrets")
AppEnv = Literal["local", "dev", "prod"]
_REDIS_DSN = TypeAdapter(RedisDsn)


def _redis_url(url: str) -> str:
    """A ``redis://``/``rediss://`` URL (normalised by pydantic's RedisDsn), or a Sentinel
    group's ``sentinel://`` URL (``pkg/redis_sentinel.py``); a bad one says what is wrong."""
    if is_sentinel(url):
        SentinelUrl.parse(url)
        return url
    scheme, found, _ = url.partition("://")
    if found and scheme not in ("redis", "rediss"):
        raise ValueError("URL scheme should be 'redis', 'rediss' or 'sentinel'")
    try:
        return str(_REDIS_DSN.validate_python(url))
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None


RedisUrl = Annotated[str, AfterValidator(_redis_url)]


class SettingsError(SystemExit):
    """Start-up stops with a message naming the bad variable (never its secret value)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    app_env: AppEnv = "local"

    # Broker and result backend: one Redis unless overridden. REDIS_PASSWORD (or the secret
    # file redis_password) is added to every Redis URL that carries no password of its own.
    # A Sentinel-managed Redis: sentinel://host1:26379,host2:26379,host3:26379/<master>/<db>,
    # and REDIS_SENTINEL_PASSWORD if the sentinels ask for one (their own, not Redis's).
    redis_url: RedisUrl = "redis://localhost:6379/0"
    redis_password: SecretStr | None = None
    redis_sentinel_password: SecretStr | None = None
    celery_broker_url: RedisUrl | None = None
    celery_result_backend: RedisUrl | None = None
    # TLS (rediss:// URLs): the CA that signed Redis's certificate (unset: the system's), and
    # this client's certificate and key when Redis asks for one (tls-auth-clients). Paths to
    # files, e.g. secret files under /run/secrets. Every client uses them: Celery's broker and
    # backend, the API's async clients, Flower, the healthchecks.
    redis_tls_ca_file: FilePath | None = None
    redis_tls_cert_file: FilePath | None = None
    redis_tls_key_file: FilePath | None = None

    # The API's Prometheus metrics on a port of their own (compose: 9100, not published); unset,
    # none are served.
    api_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # "json": one JSON object per log line from every service (prod); "console": readable lines.
    log_format: Literal["console", "json"] = "console"

    # Worker defaults (the launcher's flags still win over these).
    worker_concurrency: PositiveInt = 4
    # The queues a worker consumes when started with no -Q: comma-separated names, or "*" for
    # every queue a task is declared on (the compose workers). Unset: the default queue only.
    worker_queues: str | None = Field(
        default=None, pattern=r"^(\*|[A-Za-z0-9_.:-]+(,[A-Za-z0-9_.:-]+)*)$"
    )
    # Messages reserved per pool process (running plus waiting in the worker). Celery's 4
    # lets one fetch bring several, and keeps every process fed between fetches; 1 for
    # workers of long tasks, so the messages they reserve wait for no one else's task.
    worker_prefetch_multiplier: PositiveInt = 4
    # Task events (task-received/started/succeeded) from every worker: what Flower's task list
    # shows. Off by default: three extra publishes a task. Flower turns them on in the workers
    # it watches anyway (every 5 s); dev turns them on from the start.
    worker_task_events: bool = False
    # Dev auto-reload for worker, beat and api (watchfiles / uvicorn --reload).
    reload: bool = False
    # Seconds a stopping worker gets to finish running tasks before it is killed; keep it
    # a little below compose's stop_grace_period so the launcher, not Docker, decides.
    shutdown_grace_seconds: PositiveFloat = 25.0
    # Touched at every worker heartbeat; the container healthcheck checks its age.
    worker_liveness_file: Path = Path("/tmp/celery-worker-alive")

    # Time limits of every task unless a task sets its own.
    task_soft_time_limit: PositiveFloat = 300.0
    task_time_limit: PositiveFloat = 330.0
    # Delivery. "leased" (pkg/redis_transport.py): a live worker renews the lease of every task
    # it holds, and a lost worker's tasks come back LEASE_SECONDS after it is gone. "kombu":
    # kombu's own Redis transport, which hands back any task unacked after VISIBILITY_TIMEOUT
    # (so that must exceed the longest task and the furthest ETA).
    broker_transport: Literal["leased", "kombu"] = "leased"
    lease_seconds: float = Field(default=15.0, ge=3.0)
    visibility_timeout: PositiveFloat = 3600.0

    # Beat keeps its schedule file here: a directory the (non-root) beat user can write.
    beat_schedule_dir: Path = Path("/tmp/celerybeat")
    heartbeat_interval_seconds: PositiveFloat = 10.0
    # Tasks that failed for good kept for replay (the oldest go first past this many).
    dead_letters_max: PositiveInt = 10_000
    # One beat at a time: a standby takes over this long after the active one died.
    beat_lock_ttl_seconds: PositiveFloat = 30.0

    # Flower: basic auth as "user:password[,user2:password2]"; required in prod.
    flower_basic_auth: SecretStr | None = None
    # (Flower itself reads every FLOWER_* variable and fails on names it does not know, so
    # only Flower's own option names may carry that prefix.)
    flower_port: int = Field(default=5555, ge=1, le=65535)
    flower_db: Path = Path("/tmp/flower/flower.db")

    # Address the API and Flower listen on (0.0.0.0 inside containers).
    listen_host: str = "127.0.0.1"

    # API.
    api_port: int = Field(default=8000, ge=1, le=65535)
    # The API's address as clients reach it (e.g. https://api.example.com behind a proxy):
    # status URLs start with it. Unset: they follow the request (its Host header, and the
    # scheme a proxy forwards from an address in uvicorn's FORWARDED_ALLOW_IPS).
    public_base_url: AnyHttpUrl | None = None
    api_max_body_bytes: PositiveInt = 64 * 1024
    api_broker_timeout_seconds: PositiveFloat = 3.0
    # Redis connections the API's submissions and reads share (per process); all busy, a
    # request waits for one up to API_BROKER_TIMEOUT_SECONDS. Long-polls (?wait=) use one
    # connection of their own, for at most API_MAX_WAITERS clients at once (then 429).
    api_redis_connections: PositiveInt = 50
    api_max_waiters: PositiveInt = 1000
    # How long an Idempotency-Key maps to the task first submitted with it.
    api_idempotency_seconds: PositiveInt = 24 * 3600
    readiness_timeout_seconds: PositiveFloat = 1.0

    @property
    def app_redis_url(self) -> str:
        """The Redis for the app's own keys (heartbeat, submitted tasks)."""
        return self._authed(self.redis_url)

    @property
    def broker_url(self) -> str:
        return self._authed(self.celery_broker_url or self.redis_url)

    @property
    def result_backend(self) -> str:
        return self._authed(self.celery_result_backend or self.redis_url)

    def _authed(self, url: str) -> str:
        """The URL with REDIS_PASSWORD added, after the URL's user name if it has one (a Redis
        ACL user): ``redis://app@redis/0`` -> ``redis://app:<password>@redis/0``."""
        parts = urlsplit(str(url))
        if self.redis_password is None or parts.password is not None:
            return str(url)
        password = quote(self.redis_password.get_secret_value(), safe="")
        user, _, host = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    def redis_tls(self, url: str) -> dict[str, Any]:
        """redis-py's TLS options for a client of ``url`` (none for ``redis://``): the
        certificate is always verified."""
        if urlsplit(url).scheme != "rediss":
            return {}
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        files = {"ssl_ca_certs": self.redis_tls_ca_file, "ssl_certfile": self.redis_tls_cert_file,
                 "ssl_keyfile": self.redis_tls_key_file}  # fmt: skip
        options.update({key: str(path) for key, path in files.items() if path is not None})
        return options

    def sentinel_kwargs(self) -> dict[str, Any]:
        """How every client talks to the sentinels themselves: their password, and timeouts
        (a sentinel that is down must cost a second, not a hang)."""
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.readiness_timeout_seconds,
            "socket_timeout": self.readiness_timeout_seconds,
        }
        if self.redis_sentinel_password is not None:
            kwargs["password"] = self.redis_sentinel_password.get_secret_value()
        return kwargs

    @model_validator(mode="after")
    def _check(self) -> Settings:
        urls = (self.redis_url, self.celery_broker_url, self.celery_result_backend)
        tls_files = (self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file)
        schemes = {urlsplit(u).scheme for u in urls if u is not None}
        if any(tls_files) and "rediss" not in schemes:
            raise ValueError("REDIS_TLS_* files are set but no Redis URL is rediss://")
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ValueError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("TASK_SOFT_TIME_LIMIT must be below TASK_TIME_LIMIT")
        if self.broker_transport == "kombu" and self.visibility_timeout <= self.task_time_limit:
            raise ValueError("VISIBILITY_TIMEOUT must exceed TASK_TIME_LIMIT (the longest task)")
        if self.app_env == "prod":
            if not urlsplit(self.broker_url).password:
                raise ValueError("REDIS_PASSWORD is required in prod (or a password in REDIS_URL)")
            if self.reload:
                raise ValueError("RELOAD must be off in prod")
        return self

    def describe(self) -> dict[str, str]:
        """A loggable summary: URLs masked, secrets left out."""
        return {
            "app_env": self.app_env,
            "broker": mask_url(self.broker_url),
            "result_backend": mask_url(self.result_backend),
            "reload": str(self.reload),
            "flower_auth": "set" if self.flower_basic_auth else "off",
        }


def mask_url(url: str) -> str:
    """``redis://user:secret@host/0`` -> ``redis://user:***@host/0``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    credentials, _, host = parts.netloc.rpartition("@")
    user = credentials.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def env_file_for(app_env: str | None) -> Path | None:
    if not app_env or app_env == "local":
        return None
    return REPO_ROOT / f".env.{app_env}"


def load_settings() -> Settings:
    """Read and validate settings; on a bad value stop with a message naming the variable."""
    app_env = os.environ.get("APP_ENV")
    try:
        return Settings(
            _env_file=env_file_for(app_env),
            _secrets_dir=SECRETS_DIR if SECRETS_DIR.is_dir() else None,
        )
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            # The message only, never the input: the value may be a secret.
            lines.append(f"  {name}: {err['msg']}")
        raise SettingsError("Invalid settings:\n" + "\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
