"""The shape of every program email, built in one place for the SMTP and the file transport.

Both transports write exactly these bytes (``email_wire`` writes them directly when every
header is plain ASCII, and through ``build_email`` otherwise), so the ``.eml`` files a
developer reads in ``var/outbox/email`` are what a patient's mail client receives. Each header
has a job:

* ``Message-ID`` is stored as the outbox row's ``provider_id``; a reply's ``In-Reply-To`` or
  ``References`` finds its message again through it.
* ``Reply-To: reply+<outbox id>-<tag>@<reply_domain>`` finds the message when a client drops
  the threading headers. The tag is a truncated HMAC in lowercase hex rather than an
  itsdangerous token: forwarders may lowercase the local part and RFC 5321 caps it at 64
  characters, so the token must survive case-folding and stay short.
* ``List-Unsubscribe`` (RFC 2369) with ``List-Unsubscribe-Post`` (RFC 8058) gives mail clients
  a one-click unsubscribe, which Gmail and Yahoo require of bulk senders.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from urllib.parse import quote

from campaigns.channels.base import OutgoingMessage
from campaigns.enums import Channel
from campaigns.tokens import unsubscribe_token
from config.settings import Settings

#: Outbox provider ids are stored in 100 characters; a longer Message-ID could not be matched.
MAX_MESSAGE_ID = 100


class _ClassCachingRegistry(HeaderRegistry):
    """The standard header registry, but each header name's class is made once: the stdlib
    builds a new class with ``type()`` every time a header is set or read (~25 times per
    email), which was about a fifth of building and writing one. Same classes, same bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


_HEADERS = _ClassCachingRegistry()
#: Built with 76 columns: Python wraps quoted-printable at the policy's line length, and
#: RFC 2045 allows 76 ...
BUILD_POLICY = policy.SMTP.clone(max_line_length=76, header_factory=_HEADERS)
#: ... but written with RFC 5322's 998-column limit: folding the long List-Unsubscribe value
#: would turn its URLs into RFC 2047 encoded-words, which mail clients do not decode there.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998, header_factory=_HEADERS)
ONE_CLICK = "List-Unsubscribe=One-Click"
#: Set by :func:`build_email` only; a caller's ``OutgoingMessage.headers`` may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)

_REPLY_PURPOSE = b"email-reply-v1:"
_BOUNCE_PURPOSE = b"email-bounce-v1:"
_REPLY_TAG_LENGTH = 24  # hex characters: 96 bits, far beyond online guessing
_TAGGED_LOCAL = re.compile(r"(reply|bounce)\+(\d{1,12})-([0-9a-f]{24})", re.IGNORECASE)
_UNSUBSCRIBE_SUBJECT = re.compile(r"\bunsubscribe-([\w-]+\.[\w-]+\.[\w-]+)")


@dataclass(frozen=True)
class EmailIdentity:
    """Who program mail is from and where answers go; built once per process from settings."""

    sender: str
    display_name: str
    reply_domain: str
    unsubscribe_mailto: str
    public_base_url: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if "@" not in self.sender:
            raise ValueError("email_from must be an email address")
        if len(self.domain) > 60:
            raise ValueError("email_from's domain is too long for Message-IDs")

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailIdentity:
        name, address = parseaddr(settings.email_from)
        return cls(
            sender=address or settings.email_from,
            display_name=name or settings.clinic_name,
            reply_domain=settings.reply_domain,
            unsubscribe_mailto=settings.unsubscribe_mailto,
            public_base_url=settings.public_base_url.rstrip("/"),
            key=settings.signing_key,
        )

    @property
    def domain(self) -> str:
        return self.sender.rpartition("@")[2]


def new_message_id(outbox_id: int, domain: str) -> str:
    """Unique and unguessable, so only someone who received the email can thread onto it."""
    return f"<{outbox_id}.{secrets.token_hex(8)}@{domain}>"


def _tag(key: bytes, purpose: bytes, outbox_id: int) -> str:
    digest = hmac.new(key, purpose + str(outbox_id).encode(), hashlib.sha256)
    return digest.hexdigest()[:_REPLY_TAG_LENGTH]


def reply_tag(key: bytes, outbox_id: int) -> str:
    return _tag(key, _REPLY_PURPOSE, outbox_id)


def reply_address(identity: EmailIdentity, outbox_id: int) -> str:
    return f"reply+{outbox_id}-{reply_tag(identity.key, outbox_id)}@{identity.reply_domain}"


def bounce_address(identity: EmailIdentity, outbox_id: int) -> str:
    """The envelope sender (VERP): a bounce names the exact message that failed, and only we
    can mint the address, so a forged bounce cannot fail someone else's message."""
    tag = _tag(identity.key, _BOUNCE_PURPOSE, outbox_id)
    return f"bounce+{outbox_id}-{tag}@{identity.reply_domain}"


def _read_tagged(key: bytes, reply_domain: str, address: str, kind: str) -> int | None:
    local, _, domain = address.strip().rpartition("@")
    if domain.lower() != reply_domain.lower():
        return None
    match = _TAGGED_LOCAL.fullmatch(local)
    if match is None or match.group(1).lower() != kind:
        return None
    outbox_id = int(match.group(2))
    purpose = _REPLY_PURPOSE if kind == "reply" else _BOUNCE_PURPOSE
    if not hmac.compare_digest(match.group(3).lower(), _tag(key, purpose, outbox_id)):
        return None
    return outbox_id


def read_reply_address(key: bytes, reply_domain: str, address: str) -> int | None:
    """The outbox id a ``reply+...`` address names, or None if it is not ours or is forged."""
    return _read_tagged(key, reply_domain, address, "reply")


def read_bounce_address(key: bytes, reply_domain: str, address: str) -> int | None:
    """The outbox id a ``bounce+...`` address names, or None if it is not ours or is forged."""
    return _read_tagged(key, reply_domain, address, "bounce")


def unsubscribe_subject(token: str) -> str:
    return f"unsubscribe-{token}"


def read_unsubscribe_subject(subject: str) -> str | None:
    """The unsubscribe token in a List-Unsubscribe mailto's subject ("Re:" prefixes allowed)."""
    match = _UNSUBSCRIBE_SUBJECT.search(subject)
    return match.group(1) if match else None


def unsubscribe_headers(identity: EmailIdentity, patient_id: int) -> dict[str, str]:
    token = unsubscribe_token(identity.key, patient_id, Channel.EMAIL)
    subject = quote(unsubscribe_subject(token), safe="")
    mailto = f"mailto:{identity.unsubscribe_mailto}?subject={subject}"
    https = f"{identity.public_base_url}/unsubscribe/{token}"
    return {"List-Unsubscribe": f"<{mailto}>, <{https}>", "List-Unsubscribe-Post": ONE_CLICK}


def build_email(
    message: OutgoingMessage,
    identity: EmailIdentity,
    *,
    now: datetime,
    message_id: str | None = None,
) -> EmailMessage:
    """The complete MIME message: text, HTML when the template has it, and every header."""
    if not message.subject:
        raise ValueError("an email needs a subject")
    mime = EmailMessage(policy=BUILD_POLICY)
    mime["From"] = Address(identity.display_name, addr_spec=identity.sender)
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(now)
    mime["Message-ID"] = message_id or new_message_id(message.outbox_id, identity.domain)
    mime["Reply-To"] = Address(
        identity.display_name, addr_spec=reply_address(identity, message.outbox_id)
    )
    for name, value in unsubscribe_headers(identity, message.patient_id).items():
        mime[name] = value
    _add_extra_headers(mime, message.headers)
    mime.set_content(message.body_text, cte="quoted-printable")
    if message.body_html:
        mime.add_alternative(message.body_html, subtype="html", cte="quoted-printable")
    return mime


def refuse_reserved(name: str) -> None:
    """A caller's extra header may not replace one ``build_email`` sets itself."""
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"header {name} is set by build_email and cannot be replaced")


def _add_extra_headers(mime: EmailMessage, headers: dict[str, str]) -> None:
    for name, value in headers.items():
        refuse_reserved(name)
        mime[name] = value


def to_bytes(mime: EmailMessage) -> bytes:
    """CRLF line ends, unfolded List-Unsubscribe; UTF-8 headers only for a non-ASCII address."""
    wire = WIRE_POLICY if str(mime["To"]).isascii() else WIRE_POLICY.clone(utf8=True)
    return mime.as_bytes(policy=wire)
