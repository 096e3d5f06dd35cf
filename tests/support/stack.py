"""Drive a real Docker Compose stack from a temporary copy of the repo, and always tear it down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import REPO_ROOT

COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    ".hypothesis", "bench", "tests", "*.db",
)  # fmt: skip


def docker_ready() -> str | None:
    """None when Docker and Compose v2 work here, else why not."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    for cmd in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            if subprocess.run(cmd, capture_output=True, timeout=30).returncode != 0:
                return f"`{' '.join(cmd)}` failed (no engine running?)"
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` timed out"
    return None


def require_docker() -> None:
    reason = docker_ready()
    if reason is None:
        return
    if os.environ.get("REQUIRE_DOCKER") == "1":
        pytest.fail(f"REQUIRE_DOCKER=1 but Docker is unusable: {reason}")
    pytest.skip(f"Docker unavailable: {reason} (set REQUIRE_DOCKER=1 to make this an error)")


def copy_repo(dest: Path) -> Path:
    shutil.copytree(REPO_ROOT, dest, ignore=COPY_IGNORE)
    return dest


class Stack:
    """``docker compose`` on a throwaway project name, in ``workdir``."""

    def __init__(
        self, workdir: Path, *, profile: str, env: dict[str, str | None] | None = None
    ) -> None:
        """``env`` adds variables for compose; a None value removes one."""
        self.workdir = workdir
        self.project = f"e2e-{profile}-{uuid.uuid4().hex[:8]}"
        self.profile = profile
        merged = {**os.environ, "COMPOSE_PROFILES": profile, **(env or {})}
        self.env = {k: v for k, v in merged.items() if v is not None}

    def compose(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", "compose", "-p", self.project, *args],
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.compose("config", "--format", "json").stdout))

    def port(self, service: str, port: int) -> int:
        out = self.compose("port", service, str(port)).stdout.strip()
        return int(out.rsplit(":", 1)[1])

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service, check=False).stdout

    def running_services(self) -> set[str]:
        out = self.compose("ps", "--services", "--status", "running").stdout
        return set(out.split())

    def container_ids(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "-t", "10", check=False)
