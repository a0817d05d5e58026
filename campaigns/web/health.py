"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from campaigns.metrics import registry_for
from campaigns.web.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def liveness() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readiness(rt: RuntimeDep, response: Response) -> dict[str, str]:
    try:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "database unavailable"}
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
def metrics(rt: RuntimeDep, request: Request) -> Response:
    """Prometheus scrape; read from the database so every process's work is counted."""
    token = rt.settings.metrics_token
    if token is not None:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "metrics token required")
    return Response(generate_latest(registry_for(rt)), media_type=CONTENT_TYPE_LATEST)
