"""The process-wide pieces built once from settings: engine, templates, transports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import time
from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from campaigns import field_crypto
from campaigns.channels.base import Transport
from campaigns.channels.files import FileEmailTransport, FileSmsTransport
from campaigns.channels.smtp_email import SmtpEmailTransport
from campaigns.channels.twilio_sms import TwilioSmsTransport
from campaigns.db import engine_for, session_scope
from campaigns.email_headers import EmailIdentity
from campaigns.enums import Channel
from campaigns.field_crypto import FieldKeys
from campaigns.ratelimit import RateLimiter, limiter_for
from campaigns.rendering import TemplateLibrary
from campaigns.sendwindow import SendWindow
from config.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    templates: TemplateLibrary
    transports: dict[Channel, Transport] = field(default_factory=dict)
    limiter: RateLimiter | None = None
    #: Rows per second the last claim of a send batch went out at, in this process: the next
    #: batch's first claim is sized by it (``outbox.deliver_batch``).
    send_pace: float | None = None

    @property
    def window(self) -> SendWindow:
        return _window(self.settings.send_window_start, self.settings.send_window_end)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.engine) as session:
            yield session


@lru_cache(maxsize=16)
def _window(start: time, end: time) -> SendWindow:
    """One window per setting, not one per call: the tick and the sends ask for it per
    message, and a new frozen dataclass (validated, then hashed by the clock cache) cost more
    than the look-up."""
    return SendWindow(start, end)


def default_transports(settings: Settings) -> dict[Channel, Transport]:
    return {
        Channel.EMAIL: _email_transport(settings),
        Channel.SMS: _sms_transport(settings),
    }


def _email_transport(settings: Settings) -> Transport:
    if settings.email_transport == "smtp":
        return SmtpEmailTransport.from_settings(settings)
    folder = settings.resolved_outbox_dir / "email"
    return FileEmailTransport(folder, EmailIdentity.from_settings(settings))


def _sms_transport(settings: Settings) -> Transport:
    if settings.sms_transport == "twilio":
        return TwilioSmsTransport.from_settings(settings)
    return FileSmsTransport(settings.resolved_outbox_dir / "sms")


def build_runtime(settings: Settings) -> Runtime:
    field_crypto.install(FieldKeys.from_settings(settings))
    return Runtime(
        settings=settings,
        engine=engine_for(settings.resolved_database_url),
        templates=TemplateLibrary(settings.templates_dir),
        transports=default_transports(settings),
        limiter=limiter_for(
            settings.resolved_rate_limit_url, settings.sms_per_second, settings.email_per_second
        ),
    )
