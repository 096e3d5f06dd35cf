"""Run kombu's and Celery's own tests against this project's Redis transport.

    uv run --no-project --with-requirements requirements/test.txt \
        --with pytest-freezer,pytest-rerunfailures,pytest-subtests,pytest-order,freezegun \
        python scripts/library_suites.py

Downloads the pinned kombu and Celery sdists (their tests ship in them), starts a throwaway
redis-server on a free port, and runs:

1. kombu's Redis transport tests, unit (``t/unit/transport/test_redis.py``, a mocked client)
   and integration (``t/integration/test_redis.py``, a real Redis), once on kombu's own
   transport and once on ``pkg.redis_transport`` (the unit file imports a module that is
   kombu's with our classes in place of its Transport, Channel and QoS; the integration
   file's connections are opened with ``transport=`` ours);
2. a subset of Celery's integration tests (``t/integration/test_tasks.py``: a real worker on
   a real Redis), with ``broker_transport`` set to ours through Celery's own
   ``integration-tests-config.json``.

Prints the counts of each run side by side; the README's reliability section explains the
differences. Not part of CI: it downloads the sdists and takes several minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.processes import Redis

OURS = "pkg.redis_transport:Transport"
# kombu's Redis transport module with our classes in place of its own, for its unit tests.
SHIM = """
from kombu.transport import redis as _kombu_redis
globals().update({k: v for k, v in vars(_kombu_redis).items() if not k.startswith('__')})
from pkg.redis_transport import Channel, QoS, Transport  # noqa: E402,F401
"""


def pinned(name: str) -> str:
    text = (REPO_ROOT / "requirements" / "test.txt").read_text()
    match = re.search(rf"^{name}==([\w.]+)", text, re.MULTILINE)
    assert match, name
    return match.group(1)


def fetch_sdists(workdir: Path) -> dict[str, Path]:
    trees = {}
    for name in ("kombu", "celery"):
        version = pinned(name)
        # The base interpreter's pip (uv has no download command); the sdist alone.
        pip = [str(Path(sys.base_prefix) / "bin" / "python3"), "-m", "pip"]
        subprocess.run(
            [*pip, "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(workdir),
             f"{name}=={version}"],
            check=True,
        )  # fmt: skip
        with tarfile.open(workdir / f"{name}-{version}.tar.gz") as archive:
            archive.extractall(workdir, filter="data")
        trees[name] = workdir / f"{name}-{version}"
    return trees


def pytest_counts(cwd: Path, args: list[str], env: dict[str, str], log: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "addopts=",
         "--timeout=300", *args],
        cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
    )  # fmt: skip
    log.write_text(result.stdout + result.stderr)
    lines = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return lines[-1].strip("= ") if lines else f"no summary (exit {result.returncode}), see {log}"


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="library-suites-"))
    trees = fetch_sdists(workdir)
    server = Redis(workdir / "redis")
    pythonpath = os.pathsep.join([str(workdir / "shim"), str(REPO_ROOT)])
    env = {"PYTHONPATH": pythonpath, "REDIS_HOST": "127.0.0.1", "REDIS_6379_TCP": str(server.port)}
    rows = []
    try:
        kombu = trees["kombu"]
        # kombu's unit tests on ours: the same file, reading the shim instead of kombu's module.
        (workdir / "shim").mkdir()
        (workdir / "shim" / "redis_transport_shim.py").write_text(SHIM)
        unit = kombu / "t/unit/transport/test_redis.py"
        ours_unit = unit.with_name("test_redis_ours.py")
        ours_unit.write_text(
            unit.read_text().replace(
                "from kombu.transport import redis  # noqa",
                "import redis_transport_shim as redis  # noqa",
            )
        )
        # kombu's integration tests on ours: connections opened with transport= ours.
        integration = kombu / "t/integration/test_redis.py"
        ours_integration = integration.with_name("test_redis_ours.py")
        ours_integration.write_text(
            integration.read_text().replace(
                "        transport_options=transport_options\n    )",
                f"        transport_options=transport_options, transport={OURS!r}\n    )",
            )
        )
        for label, path in [
            ("kombu unit, kombu's transport", unit),
            ("kombu unit, ours", ours_unit),
            ("kombu integration, kombu's transport", integration),
            ("kombu integration, ours", ours_integration),
        ]:
            log = workdir / f"{path.stem}-{path.parent.name}.log"
            # No reruns: a failure counts once (every integration test also runs with a
            # global_keyprefix, which ours refuses, and would be retried five times).
            args = ["-p", "no:rerunfailures", str(path.relative_to(kombu))]
            rows.append((label, pytest_counts(kombu, args, env, log)))

        celery = trees["celery"]
        broker = f"redis://127.0.0.1:{server.port}/0"
        celery_env = {**env, "TEST_BROKER": broker, "TEST_BACKEND": broker}
        config = celery / "integration-tests-config.json"
        for label, overrides in [
            ("celery t/integration/test_tasks.py, kombu's transport", {}),
            (
                "celery t/integration/test_tasks.py, ours",
                {"broker_transport": OURS, "broker_transport_options": {"visibility_timeout": 15}},
            ),
        ]:
            config.write_text(json.dumps(overrides))
            log = workdir / f"celery-{'ours' if overrides else 'kombu'}.log"
            args = ["-p", "celery.contrib.pytest", "t/integration/test_tasks.py"]
            rows.append((label, pytest_counts(celery, args, celery_env, log)))
    finally:
        server.stop()
    width = max(len(label) for label, _ in rows)
    for label, counts in rows:
        print(f"{label:<{width}}  {counts}")
    print(f"logs: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
