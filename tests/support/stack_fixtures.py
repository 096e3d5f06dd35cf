"""Compose fixtures (registered in tests/conftest.py): images built once per session, stacks on
throwaway project names, always torn down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import free_port
from tests.support.stack import Stack, copy_repo, require_docker

# With the characters redis.conf's quoting and URLs must escape: every prod test checks them.
REDIS_PASSWORD = 'e2e-"redis\\pw@7f3a/:'
FLOWER_USER, FLOWER_PASSWORD = "admin", "e2e-flower-pw"


def write_secrets(tree: Path, **overrides: str | None) -> None:
    """The prod secret files, as the README has users make them; None leaves one out."""
    secrets = {
        "redis_password": REDIS_PASSWORD,
        "flower_basic_auth": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
        **overrides,
    }
    folder = tree / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    for name, value in secrets.items():
        path = folder / name
        path.unlink(missing_ok=True)
        if value is not None:
            path.write_text(value + "\n")
            path.chmod(0o644)  # readable by the containers' non-root user through the mount


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repo with both image targets built from it (layers cached)."""
    require_docker()
    tree = copy_repo(tmp_path_factory.mktemp("build") / "repo")
    for profile in ("dev", "prod"):
        started = time.monotonic()
        Stack(tree, profile=profile).compose("build", timeout=1800)
        print(f"\nbuild {profile} images: {time.monotonic() - started:.1f} s")
    return tree


def _up(stack: Stack, services: tuple[str, ...] = ()) -> float:
    """Start the stack (only ``services`` and what they depend on, if given), healthy."""
    started = time.monotonic()
    try:
        stack.compose("up", "-d", "--wait", "--wait-timeout", "180", *services, timeout=300)
    except AssertionError:
        print(stack.compose("logs", "--no-color", "--tail", "60", check=False).stdout)
        stack.down()
        raise
    return time.monotonic() - started


@pytest.fixture(scope="module")
def dev_stack(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tree = copy_repo(tmp_path_factory.mktemp("dev") / "repo")
    stack = Stack(
        tree, profile="dev", env={"API_PORT": str(free_port()), "FLOWER_PORT": str(free_port())}
    )
    print(f"\ndev stack: up to healthy in {_up(stack):.1f} s")
    try:
        yield stack
    finally:
        stack.down()


def start_prod_stack(
    tmp_path_factory: pytest.TempPathFactory,
    extra_settings: str = "",
    services: tuple[str, ...] = (),
) -> Stack:
    """A prod stack from a copy of the repo; ``extra_settings`` lines go into its .env.prod;
    ``services``: only these (and what they depend on), else all."""
    tree = copy_repo(tmp_path_factory.mktemp("prod") / "repo")
    write_secrets(tree)
    if extra_settings:
        with (tree / ".env.prod").open("a") as env_file:
            env_file.write(extra_settings)
    env: dict[str, str | None] = {
        "API_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "PROMETHEUS_PORT": str(free_port()),
    }
    stack = Stack(tree, profile="prod", env=env)
    print(f"\nprod stack: up to healthy in {_up(stack, services):.1f} s")
    return stack


@pytest.fixture(scope="module")
def prod_stack(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_prod_stack(tmp_path_factory)
    try:
        yield stack
    finally:
        stack.down()
