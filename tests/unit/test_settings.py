from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from internal.config.setting import (
    REPO_ROOT,
    Settings,
    SettingsError,
    load_settings,
    mask_url,
)
from pkg.redis_sentinel import SentinelUrl

SETTINGS_VARS = (
    "APP_ENV", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "WORKER_CONCURRENCY",
    "RELOAD", "FLOWER_BASIC_AUTH", "REDIS_PASSWORD", "TASK_TIME_LIMIT", "TASK_SOFT_TIME_LIMIT",
    "VISIBILITY_TIMEOUT", "REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE",
    "REDIS_SENTINEL_PASSWORD",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)


def test_broker_and_backend_derive_from_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/3")
    s = load_settings()
    assert s.broker_url == s.result_backend == "redis://cache:6379/3"


def test_explicit_backend_overrides_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/3")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://results:6379/1")
    s = load_settings()
    assert s.broker_url == "redis://cache:6379/3"
    assert s.result_backend == "redis://results:6379/1"


def test_app_env_picks_the_env_file_and_real_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "dev")
    assert load_settings().broker_url == "redis://redis:6379/0"  # from .env.dev
    assert load_settings().reload is True
    monkeypatch.setenv("RELOAD", "false")
    assert load_settings().reload is False


def test_env_file_beats_defaults(tmp_path: Path) -> None:
    env_file = tmp_path / ".env.test"
    env_file.write_text("WORKER_CONCURRENCY=7\n")
    assert Settings(_env_file=env_file).worker_concurrency == 7
    assert Settings().worker_concurrency == 4


def test_committed_env_files_hold_no_secrets() -> None:
    for name in (".env.dev", ".env.prod"):
        lines = (REPO_ROOT / name).read_text().splitlines()
        assignments = [line for line in lines if line and not line.startswith("#")]
        assert not [line for line in assignments if line.startswith("FLOWER_BASIC_AUTH=")]
        assert not [line for line in assignments if "@" in line], (
            f"{name} must not carry credentials in a URL"
        )


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("WORKER_CONCURRENCY", "four", "WORKER_CONCURRENCY: Input should be a valid integer"),
        ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY: Input should be greater than 0"),
        (
            "REDIS_URL",
            "http://not-redis",
            "REDIS_URL: Value error, URL scheme should be 'redis', 'rediss' or 'sentinel'",
        ),
        ("REDIS_URL", "redis//broken", "REDIS_URL: Value error, Input should be a valid URL"),
        ("REDIS_URL", "sentinel://s1:26379,s2:26379", "REDIS_URL: Value error, name the master"),
        ("REDIS_URL", "sentinel://s1;sentinel://s2/m", "REDIS_URL: Value error, list the sent"),
        ("REDIS_URL", "sentinel://s1:x/m", "REDIS_URL: Value error, each sentinel is host:port"),
        ("REDIS_URL", "sentinel://s1/m/zero", "REDIS_URL: Value error, the database must be"),
        ("APP_ENV", "staging", "APP_ENV: Input should be 'local', 'dev' or 'prod'"),
        ("VISIBILITY_TIMEOUT", "10", "VISIBILITY_TIMEOUT must exceed TASK_TIME_LIMIT"),
    ],
)
def test_bad_value_stops_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv("BROKER_TRANSPORT", "kombu")  # the visibility timeout is kombu's
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert message in str(info.value.code)


def test_prod_requires_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "prod")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    with pytest.raises(SettingsError, match="REDIS_PASSWORD is required in prod"):
        load_settings()
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret/pw")
    s = load_settings()
    assert s.broker_url == s.result_backend == "redis://:s3cret%2Fpw@redis:6379/0"
    assert s.app_redis_url == s.broker_url


def test_secrets_are_read_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "redis_password").write_text("from-a-file")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    s = Settings(_secrets_dir=tmp_path)
    assert s.broker_url == "redis://:from-a-file@redis:6379/0"


def test_secrets_never_in_errors_or_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret-pw@redis:6379/0")
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "admin:flower-pw")
    s = load_settings()
    shown = f"{s.describe()} {s!r} {s}"
    assert "s3cret-pw" not in str(s.describe())
    assert "flower-pw" not in shown
    monkeypatch.setenv("WORKER_CONCURRENCY", "s3cret-pw")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "s3cret-pw" not in str(info.value.code)


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "sentinel://app@s1:26379,s2:26380,s3/mymaster/2")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-pw")
    s = load_settings()
    assert (
        s.broker_url == s.result_backend == "sentinel://app:p%40ss@s1:26379,s2:26380,s3/mymaster/2"
    )
    target = SentinelUrl.parse(s.broker_url)
    assert target == SentinelUrl(
        sentinels=(("s1", 26379), ("s2", 26380), ("s3", 26379)),
        master_name="mymaster",
        db=2,
        username="app",
        password="p@ss",
    )
    # kombu's and Celery's form: one URL per sentinel, credentials on the first.
    assert target.kombu_url() == (
        "sentinel://app:p%40ss@s1:26379/2;sentinel://s2:26380/2;sentinel://s3:26379/2"
    )
    assert s.sentinel_kwargs()["password"] == "sentinel-pw"
    assert "p%40ss" not in str(s.describe()) and "sentinel-pw" not in str(s.describe())


def test_mask_url() -> None:
    assert mask_url("redis://:pw@redis:6379/0") == "redis://:***@redis:6379/0"
    assert mask_url("redis://user:pw@redis/0") == "redis://user:***@redis/0"
    assert mask_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_rediss_clients_verify_with_the_tls_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ca", "cert", "key"):
        (tmp_path / name).write_text("pem")
        monkeypatch.setenv(f"REDIS_TLS_{name.upper()}_FILE", str(tmp_path / name))
    monkeypatch.setenv("REDIS_URL", "rediss://app@redis:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    s = load_settings()
    assert s.broker_url == "rediss://app:pw@redis:6379/0"
    assert s.redis_tls(s.broker_url) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(tmp_path / "ca"),
        "ssl_certfile": str(tmp_path / "cert"),
        "ssl_keyfile": str(tmp_path / "key"),
    }
    assert s.redis_tls("redis://other:6379/0") == {}  # a plaintext URL gets no TLS options


@pytest.mark.parametrize(
    ("url", "variables", "message"),
    [
        (
            "redis://redis:6379/0",
            ("CA",),
            "REDIS_TLS_* files are set but no Redis URL is rediss://",
        ),
        (
            "rediss://redis:6379/0",
            ("CERT",),
            "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together",
        ),
        ("rediss://redis:6379/0", ("MISSING",), "REDIS_TLS_CA_FILE"),
    ],
)
def test_bad_tls_settings_stop_start_naming_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, variables: tuple[str, ...],
    message: str,
) -> None:  # fmt: skip
    (tmp_path / "pem").write_text("pem")
    monkeypatch.setenv("REDIS_URL", url)
    for variable in variables:
        if variable == "MISSING":
            monkeypatch.setenv("REDIS_TLS_CA_FILE", str(tmp_path / "no-such-file"))
        else:
            monkeypatch.setenv(f"REDIS_TLS_{variable}_FILE", str(tmp_path / "pem"))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert message in str(info.value.code)
