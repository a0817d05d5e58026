"""The FastAPI application: ``uvicorn campaigns.web.app:create_app --factory``."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.logs import configure as configure_logging
from campaigns.runtime import Runtime, build_runtime
from campaigns.web import (
    admin_programs,
    admin_users,
    alerts,
    api_patients,
    api_programs,
    auth_routes,
    email_hooks,
    health,
    patients,
    twilio_hooks,
    unsubscribe,
)
from campaigns.web.pages import TEMPLATES_DIR
from campaigns.web.security import LoginRequired
from campaigns.web.serving import admission_lifespan
from config.settings import get_settings

SESSION_MAX_AGE = 8 * 60 * 60  # a working day; log in again tomorrow
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
}
DEFAULT_HEADERS = (*SECURITY_HEADERS.items(), ("Cache-Control", "no-store"))


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` and ``Cache-Control: no-store`` to every HTTP response that
    does not set them. Plain ASGI: ``@app.middleware("http")`` (Starlette's
    ``BaseHTTPMiddleware``) runs every request through an extra task and memory streams, CPU
    that each webhook paid on a machine whose cores are the limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in DEFAULT_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _to_login(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/login?next={quote(exc.next_path)}", status.HTTP_303_SEE_OTHER)


def create_app(rt: Runtime | None = None) -> FastAPI:
    configure_logging()
    runtime = rt or build_runtime(get_settings())
    app = FastAPI(
        title="campaigns",
        summary="Patient messaging for chronic pain programs",
        lifespan=admission_lifespan(runtime.settings, runtime.engine),
    )
    app.state.runtime = runtime
    app.add_middleware(
        SessionMiddleware,
        secret_key=runtime.settings.signing_key.decode(),
        session_cookie="campaigns_session",
        max_age=SESSION_MAX_AGE,
        same_site="lax",
        https_only=runtime.settings.environment == "production",
    )
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(LoginRequired, _to_login)
    app.mount("/static", StaticFiles(directory=str(TEMPLATES_DIR.parent / "static")), "static")
    for module in (
        health,
        auth_routes,
        twilio_hooks,
        email_hooks,
        unsubscribe,
        patients,
        alerts,
        api_patients,
        admin_programs,
        admin_users,
        api_programs,
    ):
        app.include_router(module.router)
    return app
