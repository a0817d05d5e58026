"""Replies from an IMAP mailbox, for clinics whose mail provider has no inbound webhook.

Each poll takes the folder's UNSEEN messages, hands each raw message to
:func:`campaigns.inbound_email.receive_email`, and marks it ``\\Seen`` only after its reply
is committed. Messages are fetched with ``BODY.PEEK[]`` because fetching ``RFC822`` or
``BODY[]`` marks them seen at once, and a crash before the commit would lose the reply.

A crash between the commit and the flag only means the message is read again next time, and
its Message-ID makes it a duplicate. A message that can never be a reply (unparseable, or
answering nothing we sent) is marked ``\\Seen \\Flagged`` for staff instead of being read
on every poll; any other failure leaves it unseen to be tried again.
"""

from __future__ import annotations

import imaplib
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

from campaigns.inbound_email import EmailOutcome, InboundEmailError, receive_email
from campaigns.logs import get_logger
from campaigns.models import utcnow
from campaigns.outbox import deliver
from campaigns.runtime import Runtime
from config.settings import ENV_PREFIX, Settings

log = get_logger(__name__)
TIMEOUT_SECONDS = 30.0
#: Per poll; the rest wait for the next poll, so one poll never runs for long.
BATCH = 100

ImapSecurity = Literal["ssl", "starttls", "none"]


class ImapError(RuntimeError):
    """The mailbox could not be read; the message names no credentials or addresses."""


@dataclass(frozen=True)
class ImapConfig:
    host: str
    username: str
    password: str = field(repr=False)
    port: int = 993
    security: ImapSecurity = "ssl"
    folder: str = "INBOX"
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> ImapConfig:
        password = settings.imap_password.get_secret_value() if settings.imap_password else ""
        missing = [
            f"{ENV_PREFIX}{name}"
            for name, value in (
                ("IMAP_HOST", settings.imap_host),
                ("IMAP_USERNAME", settings.imap_username),
                ("IMAP_PASSWORD", password),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"polling IMAP needs {', '.join(missing)}")
        return cls(
            host=settings.imap_host or "",
            username=settings.imap_username or "",
            password=password,
            port=settings.imap_port,
            security=settings.imap_security,
            folder=settings.imap_folder,
        )


@dataclass
class PollSummary:
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    unsubscribed: int = 0
    rejected: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ImapPoller:
    def __init__(
        self,
        rt: Runtime,
        config: ImapConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.rt = rt
        self.config = config
        self._ssl_context = ssl_context
        self._clock = clock

    def poll_once(self) -> PollSummary:
        """One pass over the folder's unseen messages; raises :class:`ImapError`."""
        summary = PollSummary()
        try:
            with self._connect() as imap:
                self._open_folder(imap)
                for uid in self._unseen(imap)[:BATCH]:
                    self._handle(imap, uid, summary)
        except (imaplib.IMAP4.error, OSError) as exc:
            raise ImapError(f"could not read the mailbox ({type(exc).__name__})") from None
        log.info("imap-poll", **summary.as_dict())
        return summary

    def _connect(self) -> imaplib.IMAP4:
        cfg = self.config
        tls = self._ssl_context or ssl.create_default_context()
        if cfg.security == "ssl":
            return imaplib.IMAP4_SSL(cfg.host, cfg.port, ssl_context=tls, timeout=cfg.timeout)
        imap = imaplib.IMAP4(cfg.host, cfg.port, timeout=cfg.timeout)
        if cfg.security == "starttls":
            try:
                imap.starttls(ssl_context=tls)
            except BaseException:
                imap.shutdown()
                raise
        return imap

    def _open_folder(self, imap: imaplib.IMAP4) -> None:
        imap.login(self.config.username, self.config.password)
        typ, _ = imap.select(_quoted(self.config.folder))
        if typ != "OK":
            raise imaplib.IMAP4.error("SELECT failed")

    def _unseen(self, imap: imaplib.IMAP4) -> list[bytes]:
        typ, data = imap.uid("SEARCH", "UNSEEN")
        if typ != "OK":
            raise imaplib.IMAP4.error("SEARCH failed")
        return [uid for line in data if isinstance(line, bytes) for uid in line.split()]

    def _fetch(self, imap: imaplib.IMAP4, uid: bytes) -> bytes | None:
        typ, data = imap.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
        if typ != "OK":
            return None
        for item in data:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        return None

    def _handle(self, imap: imaplib.IMAP4, uid: bytes, summary: PollSummary) -> None:
        raw = self._fetch(imap, uid)
        if raw is None:
            summary.failed += 1
            return
        summary.fetched += 1
        try:
            outcome = self._commit(raw)
        except InboundEmailError as exc:
            log.warning("imap-rejected", uid=uid.decode(), reason=exc.reason)
            summary.rejected += 1
            self._flag(imap, uid, "(\\Seen \\Flagged)")
            return
        except Exception as exc:  # database or code failure: leave unseen, try next poll
            # Only the class name: SQL errors quote their parameters, i.e. patient text.
            log.error("imap-failed", uid=uid.decode(), error=type(exc).__name__)
            summary.failed += 1
            return
        self._flag(imap, uid, "(\\Seen)")
        _count(outcome, summary)
        for outbox_id in outcome.responses:
            deliver(self.rt, outbox_id, now=self._clock())

    def _commit(self, raw: bytes) -> EmailOutcome:
        with self.rt.session() as session:
            return receive_email(self.rt, session, raw, now=self._clock())

    def _flag(self, imap: imaplib.IMAP4, uid: bytes, flags: str) -> None:
        typ, _ = imap.uid("STORE", uid.decode(), "+FLAGS.SILENT", flags)
        if typ != "OK":
            raise imaplib.IMAP4.error("STORE failed")


def _count(outcome: EmailOutcome, summary: PollSummary) -> None:
    if outcome.ignored:
        summary.ignored += 1
    elif outcome.unsubscribed:
        summary.unsubscribed += 1
    elif outcome.duplicate:
        summary.duplicates += 1
    else:
        summary.stored += 1


def _quoted(mailbox: str) -> str:
    """imaplib sends arguments as they are; a folder name with a space needs quoting."""
    escaped = mailbox.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
