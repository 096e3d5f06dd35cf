"""deploy/kubernetes: every manifest valid against the Kubernetes API's schemas (strict: no
unknown fields), and in agreement with compose's prod services, so the two cannot drift:
image, entrypoint and command, environment names, secret paths, probe commands, grace periods,
user and lock-down. No cluster is needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from internal.infra.celery import TASKS
from tests.support.processes import REPO_ROOT

KUBERNETES_VERSION = "1.33"  # the oldest release still supported upstream (2026)
MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
APP_UID = 10001  # the Dockerfile's app user


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def base_resources() -> list[dict[str, Any]]:
    kustomization = documents(MANIFESTS / "kustomization.yaml")[0]
    return [doc for name in kustomization["resources"] for doc in documents(MANIFESTS / name)]


def workloads() -> dict[str, dict[str, Any]]:
    kinds = ("Deployment", "StatefulSet")
    return {d["metadata"]["name"]: d for d in base_resources() if d["kind"] in kinds}


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(only)


def compose_prod() -> dict[str, dict[str, Any]]:
    services = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())["services"]
    return {name: s for name, s in services.items() if "prod" in s.get("profiles", [])}


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


# Each app workload and the compose service it must agree with.
PAIRS = {
    "api": "api-prod",
    "worker-default": "worker-prod",
    "worker-slow": "worker-prod",
    "beat": "beat-prod",
    "flower": "flower-prod",
}


@pytest.mark.parametrize(
    "doc", base_resources(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_manifest_is_valid_for_the_kubernetes_api(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_misspelt_field() -> None:
    broken = workloads()["api"]
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_one_worker_deployment_per_declared_queue() -> None:
    queues = {
        env["value"]
        for name, w in workloads().items()
        if name.startswith("worker-")
        for env in container(w)["env"]
        if env["name"] == "WORKER_QUEUES"
    }
    assert queues == set(TASKS.queues())


@pytest.mark.parametrize("name", PAIRS)
def test_a_workload_agrees_with_its_compose_service(name: str) -> None:
    compose = compose_prod()[PAIRS[name]]
    workload = workloads()[name]
    pod = workload["spec"]["template"]["spec"]
    app = container(workload)

    assert app["image"] == compose["image"]
    assert app["command"] == compose["entrypoint"]
    assert app.get("args", []) == compose.get("command", [])
    assert pod["terminationGracePeriodSeconds"] == seconds(compose.get("stop_grace_period", "10s"))

    # The same environment: .env.prod through the ConfigMap, and the service's own variables.
    (config,) = [d for d in base_resources() if d["kind"] == "ConfigMap"]
    assert app["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert set(config["data"]) == set(env_file(REPO_ROOT / compose["env_file"]))
    assert {e["name"] for e in app.get("env", [])} == set(compose["environment"])

    # Secrets: the same files at the same paths.
    (secrets,) = [v for v in pod["volumes"] if "secret" in v]
    mount = next(m for m in app["volumeMounts"] if m["name"] == secrets["name"])
    files = {f"{mount['mountPath']}/{item['path']}" for item in secrets["secret"]["items"]}
    assert files == {f"/run/secrets/{s}" for s in compose["secrets"]}

    # Probes run the compose healthcheck's command (the API's readiness asks /readyz).
    check = compose["healthcheck"]["test"]
    assert check[0] == "CMD"
    probes = {k: v["exec"]["command"] for k, v in app.items() if k.endswith("Probe")}
    assert probes, "no probes"
    for kind, command in probes.items():
        expected = (
            [*check[1:-1], "api-ready"] if kind == "readinessProbe" and name == "api" else check[1:]
        )
        assert command == expected, kind

    # Locked down as compose prod: user, read-only root, no capabilities, no escalation.
    assert pod["securityContext"]["runAsUser"] == APP_UID
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    locked = app["securityContext"]
    assert compose["read_only"] is True and locked["readOnlyRootFilesystem"] is True
    assert compose["cap_drop"] == ["ALL"] and locked["capabilities"] == {"drop": ["ALL"]}
    assert "no-new-privileges:true" in compose["security_opt"]
    assert locked["allowPrivilegeEscalation"] is False
    assert "resources" in app and "memory" in app["resources"]["limits"]


def test_the_app_user_is_the_images() -> None:
    assert f"--uid {APP_UID}" in (REPO_ROOT / "Dockerfile").read_text()


def test_redis_agrees_with_compose() -> None:
    compose = compose_prod()["redis-prod"]
    redis = container(workloads()["redis"])
    # The same start script (compose escapes $ as $$) and the same ping.
    assert [part.replace("$$", "$") for part in compose["command"]] == redis["command"]
    ping = compose["healthcheck"]["test"][1].replace("$$", "$")
    assert redis["readinessProbe"]["exec"]["command"] == ["sh", "-c", ping]
    assert compose["image"].endswith(":-" + redis["image"] + "}")
    mounts = {m["mountPath"] for m in redis["volumeMounts"]}
    assert {"/data", "/run/secrets", "/tmp"} <= mounts


def test_keda_scales_each_worker_on_its_own_queue() -> None:
    docs = documents(MANIFESTS / "keda" / "scaledobjects.yaml")
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "ScaledObject"}
    assert set(scaled) == {n for n in workloads() if n.startswith("worker-")}
    for name, obj in scaled.items():
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["metadata"]["listName"] == name.removeprefix("worker-")
        assert trigger["metadata"]["address"] == "redis:6379"
