"""The FastAPI application: ``uvicorn campaigns.web.app:create_app --factory``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

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


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


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
    app.middleware("http")(_security_headers)
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
