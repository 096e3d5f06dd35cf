"""One source of versions: the hashed pins in requirements/. The images install prod.txt or
dev.txt, the test environment test.txt (compiled with dev.txt as its constraints). These fail
when any of them drift apart, or from what this process actually runs on."""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pkg.redis_transport import TESTED_KOMBU_SERIES
from tests.support.processes import REPO_ROOT

REQUIREMENTS = REPO_ROOT / "requirements"


def pins(name: str) -> dict[str, tuple[str, Marker | None]]:
    """``requirements/<name>``: package -> (version, marker)."""
    found: dict[str, tuple[str, Marker | None]] = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        if "==" not in line or line.startswith((" ", "#")):
            continue
        requirement = Requirement(line.rstrip(" \\"))
        (spec,) = requirement.specifier
        found[canonicalize_name(requirement.name)] = (spec.version, requirement.marker)
    return found


@pytest.mark.parametrize("image_pins", ["prod.txt", "dev.txt"])
def test_the_tests_pin_what_the_images_install(image_pins: str) -> None:
    test, image = pins("test.txt"), pins(image_pins)
    drift = {
        name: (test[name][0], version)
        for name, (version, _) in image.items()
        if name in test and test[name][0] != version
    }
    assert drift == {}, f"test.txt vs {image_pins} (regenerate as the README says): {drift}"
    assert set(pins("prod.txt")) <= set(pins("dev.txt"))


def test_this_environment_runs_the_pinned_versions() -> None:
    drift = {}
    for name, (version, marker) in pins("test.txt").items():
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            drift[name] = (installed, version)
    assert drift == {}, (
        "installed vs pinned: run the tests with the README's command, which installs "
        f"requirements/test.txt: {drift}"
    )


def test_pyproject_bounds_the_tested_series() -> None:
    declared = {
        canonicalize_name(r.name): r
        for r in map(Requirement, tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())[
            "project"]["dependencies"])
    }  # fmt: skip
    pinned = pins("prod.txt")
    for name in ("celery", "kombu", "redis", "flower"):
        specifier = declared[canonicalize_name(name)].specifier
        assert specifier.contains(pinned[name][0]), (name, specifier)
        assert any(s.operator == "<" for s in specifier), f"{name} has no upper bound"
    assert pinned["kombu"][0].startswith(TESTED_KOMBU_SERIES + ".")


def test_the_images_install_every_tool_by_hash() -> None:
    """Regression (issue 10, open doors): the builder installed uv by version alone. Every
    ``pip install`` / ``uv pip install`` in the Dockerfile reads a hashed requirements file."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs, "the Dockerfile installs nothing?"
    for line in installs:
        assert "--require-hashes" in line and " -r " in line, line
    build = (REQUIREMENTS / "build.txt").read_text()
    assert "uv" in pins("build.txt") and "--hash=sha256:" in build
