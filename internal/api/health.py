"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import JSONResponse

from internal.api.broker import off_loop
from internal.api.dependencies import StoreDep
from internal.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])
PROBE_PATHS = frozenset({"/healthz", "/readyz"})  # no traces of their own


@router.get("/healthz")
async def healthz() -> Health:
    """Liveness: the process serves HTTP. No I/O."""
    return Health()


@router.get("/readyz", responses={503: {"model": Readiness}})
async def readyz(store: StoreDep, workers: bool = True) -> JSONResponse:
    """Readiness: the broker answers and at least one worker answers a ping. With
    ``?workers=false``, the broker alone (Kubernetes' readiness probe: workers scaled to zero
    must not take the API out of its Service)."""
    timeout = store.settings.readiness_timeout_seconds
    client = store.client
    checks: dict[str, str] = {}
    try:
        await off_loop(
            lambda: client.ping_broker(timeout),
            timeout=timeout + 1,
            what="broker ping",
        )
        checks["broker"] = "ok"
    except HTTPException as exc:
        checks["broker"] = str(exc.detail)
    if workers and checks["broker"] == "ok":
        answered = await off_loop(
            lambda: client.ping_workers(timeout),
            timeout=timeout + 1,
            what="worker ping",
        )
        checks["workers"] = (
            f"ok ({len(answered)})" if answered else f"no worker answered within {timeout:g} s"
        )
    elif workers:
        checks["workers"] = "not checked: broker unavailable"
    ready = all(v.startswith("ok") for v in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)
