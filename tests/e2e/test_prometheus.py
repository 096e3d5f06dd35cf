"""The alert rules' own unit tests (``promtool test rules``) and both Prometheus configs
(``promtool check config``), with the Prometheus image compose uses."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.processes import REPO_ROOT
from tests.support.stack import require_docker

pytestmark = pytest.mark.e2e
IMAGE = os.environ.get("PROMETHEUS_IMAGE", "prom/prometheus:v3.5.0")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_docker()
    return subprocess.run(
        ["docker", "run", "--rm", "-v", f"{REPO_ROOT / 'deploy' / 'prometheus'}:/rules:ro",
         "-w", "/rules", "--entrypoint", "promtool", IMAGE, *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_every_alert_rule_passes_its_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("config", ["dev.yml", "prod.yml"])
def test_the_prometheus_configs_are_valid(config: str) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 rules found" in result.stdout
