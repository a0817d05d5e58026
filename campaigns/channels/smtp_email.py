"""Email through an SMTP relay; the only module that imports ``smtplib``.

One connection per sending thread is kept for a short while, so a tick's burst of emails
shares TLS handshakes and logins. Before reuse it is checked, so a connection the server
dropped is never discovered halfway through a message (where a retry could send it twice):
a server that hung up or announced it is closing has made the socket readable, which is
seen without a round trip; one idle for more than a few seconds also answers a NOOP. A
burst therefore pays no extra round trip per message (a NOOP before each was a fifth of
each message's round trips to a relay).

Errors become :class:`DeliveryError` by reply code: 5xx refusals are permanent, 4xx replies,
timeouts and connection failures are transient. A server's reply text often quotes the
recipient's address, so reasons carry the code only and the original exception is dropped.
"""

from __future__ import annotations

import contextlib
import select
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from campaigns.channels.base import DeliveryError, OutgoingMessage, ProviderReceipt
from campaigns.email_headers import EmailIdentity, bounce_address
from campaigns.email_wire import email_bytes
from campaigns.enums import Channel
from campaigns.logs import get_logger
from campaigns.models import utcnow
from config.settings import Settings

log = get_logger(__name__)
#: A connection idle longer than this is closed rather than probed: relays drop idle clients.
IDLE_SECONDS = 60.0
#: A connection idle longer than this must answer a NOOP before it is reused: a relay or a
#: middlebox may have dropped it without a word, which no readable socket would show.
PROBE_AFTER_SECONDS = 5.0
#: Bad credentials are a configuration problem: retry, but not every few minutes.
AUTH_RETRY_SECONDS = 15 * 60.0

Security = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Security = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=password,
            timeout=settings.smtp_timeout_seconds,
        )


@dataclass
class _Connection:
    """One thread's cached SMTP session; the lock lets ``close`` reach it from elsewhere."""

    smtp: smtplib.SMTP | None = None
    last_used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SmtpEmailTransport:
    """Thread-safe: each sending thread sends over its own cached connection."""

    channel = Channel.EMAIL
    waits = True  # on the provider, across the network

    def __init__(
        self,
        config: SmtpConfig,
        identity: EmailIdentity,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = utcnow,
        probe_after: float = PROBE_AFTER_SECONDS,
    ) -> None:
        self.config = config
        self.identity = identity
        self.probe_after = probe_after
        self._ssl_context = ssl_context
        self._clock = clock
        self._local = threading.local()
        self._connections: list[_Connection] = []
        self._connections_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpEmailTransport:
        return cls(SmtpConfig.from_settings(settings), EmailIdentity.from_settings(settings))

    def send(self, message: OutgoingMessage) -> ProviderReceipt:
        if not message.subject:
            raise DeliveryError("email without a subject", permanent=True)
        if not message.to:
            raise DeliveryError("no email address", permanent=True)
        wire = email_bytes(message, self.identity, now=self._clock())
        conn = self._thread_connection()
        with conn.lock:
            try:
                self._transmit(
                    conn,
                    bounce_address(self.identity, message.outbox_id),
                    message.to,
                    wire.data,
                )
            except (smtplib.SMTPException, OSError) as exc:
                _discard(conn)
                error = delivery_error(exc)
                log.warning(
                    "smtp-failed",
                    outbox_id=message.outbox_id,
                    reason=error.reason,
                    permanent=error.permanent,
                )
                raise error from None
            conn.last_used = time.monotonic()
        return ProviderReceipt(provider_id=wire.message_id)

    def _thread_connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _Connection()
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _transmit(self, conn: _Connection, envelope_from: str, to: str, data: bytes) -> None:
        smtp = self._connection(conn)
        options: list[str] = []
        if not to.isascii():
            if not smtp.has_extn("smtputf8"):
                raise DeliveryError(
                    "the mail server cannot deliver to an internationalised address",
                    permanent=True,
                )
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        smtp.sendmail(envelope_from, [to], data, options)

    def check_connection(self) -> None:
        """Connect, negotiate TLS and log in as a send would, then hang up."""
        try:
            smtp = self._open()
        except (smtplib.SMTPException, OSError) as exc:
            raise delivery_error(exc) from None
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()

    def close(self) -> None:
        """Say QUIT on every thread's connection; call when the process is done sending
        (tests, shutdown)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with conn.lock:
                _discard(conn)

    def _connection(self, conn: _Connection) -> smtplib.SMTP:
        smtp = conn.smtp
        idle = time.monotonic() - conn.last_used
        if (
            smtp is not None
            and idle < IDLE_SECONDS
            and _quiet(smtp)
            and (idle < self.probe_after or _answers_noop(smtp))
        ):
            return smtp
        _discard(conn)
        conn.smtp = self._open()
        return conn.smtp

    def _open(self) -> smtplib.SMTP:
        cfg = self.config
        helo = self.identity.domain  # avoids socket.getfqdn(), which can stall on bad DNS
        smtp: smtplib.SMTP
        if cfg.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                cfg.host, cfg.port, helo, timeout=cfg.timeout, context=self._tls()
            )
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, helo, timeout=cfg.timeout)
        try:
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _tls(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()


def _quiet(smtp: smtplib.SMTP) -> bool:
    """Nothing has arrived since the last reply: a server that closed the connection, or
    sent a 421 before closing it, has made the socket readable."""
    sock = smtp.sock
    if sock is None:
        return False
    try:
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):  # closed or unusable socket
        return False


def _answers_noop(smtp: smtplib.SMTP) -> bool:
    try:
        return smtp.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _discard(conn: _Connection) -> None:
    smtp, conn.smtp = conn.smtp, None
    if smtp is None:
        return
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def delivery_error(exc: smtplib.SMTPException | OSError) -> DeliveryError:
    """Classify without the server's text, which may quote the address.

    Only refusals inside the message transaction (MAIL, RCPT, DATA) can be permanent: they
    are about this message. Greeting, TLS and login failures are about our configuration or
    the relay, and retrying after they are fixed must still deliver the message.
    """
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()] or [0]
        return _by_code(max(codes), "recipient refused")
    if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 530:
        return DeliveryError("the mail server requires authentication (530)", permanent=False)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _by_code(exc.smtp_code, "sender refused")
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code(exc.smtp_code, "message refused")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"SMTP authentication failed ({exc.smtp_code})",
            permanent=False,
            retry_after=AUTH_RETRY_SECONDS,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return DeliveryError(f"mail server error ({exc.smtp_code})", permanent=False)
    return DeliveryError(_connection_reason(exc), permanent=False)


def _by_code(code: int, what: str) -> DeliveryError:
    return DeliveryError(f"{what} by the mail server ({code})", permanent=500 <= code < 600)


def _connection_reason(exc: smtplib.SMTPException | OSError) -> str:
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "the mail server lacks a required extension (STARTTLS, AUTH or SMTPUTF8)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "the mail server's TLS certificate is not trusted"
    if isinstance(exc, TimeoutError):
        return "the mail server timed out"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "the mail server closed the connection"
    return f"could not reach the mail server ({type(exc).__name__})"
