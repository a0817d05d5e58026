"""The security-headers middleware on a real ASGI app: added where missing, never overriding."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI, Response

from campaigns.web.app import SECURITY_HEADERS, SecurityHeaders
from tests.event_loops import apart


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(SecurityHeaders)

    @app.get("/plain")
    def plain() -> Response:
        return Response("ok")

    @app.get("/cached")
    def cached() -> Response:
        return Response(
            "ok", headers={"Cache-Control": "max-age=60", "X-Frame-Options": "SAMEORIGIN"}
        )

    return app


def _get(path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get(path)

    return apart(asyncio.run, go())


def test_every_response_gets_the_security_headers_and_no_store() -> None:
    response = _get("/plain")
    assert all(response.headers[name] == value for name, value in SECURITY_HEADERS.items())
    assert response.headers["cache-control"] == "no-store"
    assert response.text == "ok"


def test_headers_a_route_sets_itself_are_kept_once() -> None:
    response = _get("/cached")
    assert response.headers.get_list("cache-control") == ["max-age=60"]
    assert response.headers.get_list("x-frame-options") == ["SAMEORIGIN"]
