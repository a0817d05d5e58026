"""The FastAPI application: ``uvicorn campaigns.web.app:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from campaigns.logs import configure as configure_logging
from campaigns.runtime import Runtime, build_runtime
from campaigns.web import health, twilio_hooks
from config.settings import get_settings


def create_app(rt: Runtime | None = None) -> FastAPI:
    configure_logging()
    app = FastAPI(title="campaigns", summary="Patient messaging for chronic pain programs")
    app.state.runtime = rt or build_runtime(get_settings())
    app.include_router(health.router)
    app.include_router(twilio_hooks.router)
    return app
