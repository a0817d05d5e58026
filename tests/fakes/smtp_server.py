"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives for assertions.

Plain, STARTTLS and implicit TLS, with optional required AUTH; ``refuse`` scripts a reply
code for one recipient, so error mapping is tested against real SMTP replies.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from pydantic import SecretStr

from campaigns.channels.base import Transport
from campaigns.channels.files import FileEmailTransport
from campaigns.email_headers import EmailIdentity
from campaigns.enums import Channel
from campaigns.runtime import Runtime
from tests.servers import free_port

USERNAME = "campaigns"
PASSWORD = "correct horse battery staple"
INBOUND_SECRET = "inbound-secret-0123456789abcdef"
#: A clinic's real-looking email settings (the defaults are all "localhost").
EMAIL_SETTINGS: dict[str, Any] = {
    "clinic_name": "Riverside Pain Recovery Clinic",
    "email_from": "care@clinic.example",
    "reply_domain": "reply.clinic.example",
    "unsubscribe_mailto": "unsubscribe@clinic.example",
    "public_base_url": "https://care.clinic.example",
    "inbound_email_secret": SecretStr(INBOUND_SECRET),
}


def configure_email(rt: Runtime, transport: Transport | None = None, **settings: Any) -> None:
    """Give ``rt`` the clinic's email settings and an email transport built from them."""
    rt.settings = rt.settings.model_copy(update={**EMAIL_SETTINGS, **settings})
    folder = rt.settings.resolved_outbox_dir / "email"
    rt.transports[Channel.EMAIL] = transport or FileEmailTransport(
        folder, EmailIdentity.from_settings(rt.settings)
    )


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    """aiosmtpd handler: stores envelopes; ``refuse[address] = "550 ..."`` rejects one RCPT."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    sessions: int = 0
    noops: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def greeted(self) -> None:
        """A client said EHLO or HELO (the server's thread counts, the test's reads)."""
        with self._lock:
            self.sessions += 1

    def keep(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        with self._lock:
            self.received.append(Received(mail_from, list(rcpt_tos), data))

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.greeted()
        session.host_name = hostname
        return responses

    async def handle_NOOP(self, server: Any, session: Any, envelope: Any, arg: str) -> str:
        with self._lock:
            self.noops += 1
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.keep(envelope.mail_from, envelope.rcpt_tos, bytes(envelope.content))
        return "250 Message accepted for delivery"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


class _Controller(Controller):
    """aiosmtpd stops its loop with client connections still open, leaving their sockets to
    the garbage collector (a ResourceWarning, an error here): close them first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[SMTP] = []

    def factory(self) -> SMTP:
        session: SMTP = super().factory()  # type: ignore[no-untyped-call]
        self.sessions.append(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        asyncio.run_coroutine_threadsafe(self._close_sessions(), self.loop).result(10)
        super().stop(no_assert)

    async def _close_sessions(self) -> None:
        for session in self.sessions:
            if session.transport is not None:  # uvloop's transports are not asyncio's
                session.transport.abort()  # close() would wait for a TLS goodbye
        await asyncio.sleep(0.05)  # let connection_lost (and TLS close_notify) run


@dataclass
class SmtpServer:
    handler: RecordingHandler
    port: int


@contextmanager
def smtp_server(
    mode: Literal["plain", "starttls", "ssl"] = "plain",
    *,
    tls: ssl.SSLContext | None = None,
    require_auth: bool = False,
    port: int | None = None,
) -> Iterator[SmtpServer]:
    """Run aiosmtpd on a free port; AUTH is only offered after STARTTLS, as on port 587.
    (B4 uses ``smtp_sink``, which costs the shared cores a third of this per message.)

    (aiosmtpd counts only STARTTLS as TLS for AUTH; requiring AUTH over implicit TLS would
    need ``auth_require_tls=False``, whose warning the test settings turn into an error.)
    """
    assert not (require_auth and mode != "starttls"), "AUTH is tested over STARTTLS"
    handler = RecordingHandler()
    port = port or free_port()
    kwargs: dict[str, Any] = {}
    if mode == "ssl":
        kwargs["ssl_context"] = tls
    if mode == "starttls":
        kwargs.update(tls_context=tls, require_starttls=True)
    if require_auth:
        kwargs.update(authenticator=_authenticate, auth_required=True)
    controller = _Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer(handler, port)
    finally:
        controller.stop()
