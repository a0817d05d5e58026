"""The app answers health checks over real HTTP."""

from __future__ import annotations

import httpx

from campaigns.runtime import Runtime
from campaigns.web.app import create_app
from tests.servers import serve


def test_liveness_and_readiness_over_http(rt: Runtime) -> None:
    with serve(create_app(rt)) as base:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
