"""The bytes of a program email, written directly when every header is plain ASCII.

``email_headers.build_email`` builds a stdlib ``EmailMessage`` and ``to_bytes`` flattens it:
parsing each header into a structured object and folding it back out cost ~2 ms of CPU per
email, more than the SMTP exchange. Program mail is nearly always plain: ASCII addresses,
subjects and display names, so this module writes those messages itself, byte for byte what
the stdlib writes (``tests/unit/test_email_wire.py`` compares them over generated messages),
and hands anything else (a non-ASCII address or subject, a long or oddly spaced header, a
display name that needs quoting) to the stdlib path unchanged. Bodies are encoded by the
stdlib's own quoted-printable encoder either way.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.utils import format_datetime

from campaigns.channels.base import OutgoingMessage
from campaigns.email_headers import (
    EmailIdentity,
    build_email,
    new_message_id,
    refuse_reserved,
    reply_address,
    to_bytes,
    unsubscribe_headers,
)

#: Printable ASCII words separated by single spaces, no RFC 2047 encoded-word opener: the
#: stdlib writes such an unstructured value back exactly as given.
_PLAIN_VALUE = re.compile(r"(?!.*=\?)[!-~]+(?: [!-~]+)*")
#: A dot-atom address of the common characters: parsed and rewritten unchanged.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
#: A display name of atoms that needs no quoting (no RFC 5322 specials, no dots).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'&+-]+(?: [A-Za-z0-9'&+-]+)*")
_PLAIN_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")
#: Well under RFC 5322's 998 columns, so no header is ever folded.
_MAX_HEADER_LINE = 900
_TEXT_PART = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable'


@dataclass(frozen=True)
class WireEmail:
    """What a transport sends, and the Message-ID it stores as the provider id."""

    message_id: str
    data: bytes


def email_bytes(
    message: OutgoingMessage,
    identity: EmailIdentity,
    *,
    now: datetime,
    message_id: str | None = None,
) -> WireEmail:
    """The complete message as the wire carries it (CRLF line ends)."""
    if not message.subject:
        raise ValueError("an email needs a subject")
    message_id = message_id or new_message_id(message.outbox_id, identity.domain)
    headers = _plain_headers(message, identity, now, message_id)
    if headers is None:
        mime = build_email(message, identity, now=now, message_id=message_id)
        return WireEmail(message_id, to_bytes(mime))
    text = _quoted_printable(message.body_text)
    if not message.body_html:
        body = f"{_TEXT_PART.format('plain')}\r\nMIME-Version: 1.0\r\n\r\n{text}"
    else:
        html = _quoted_printable(message.body_html)
        # "=" is always followed by hex digits or a line end in quoted-printable, so a
        # boundary that starts with "==" can never occur in either part.
        boundary = f"==============={secrets.randbelow(10**19):019d}=="
        body = (
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\n{_TEXT_PART.format('plain')}\r\n\r\n{text}\r\n"
            f"--{boundary}\r\n{_TEXT_PART.format('html')}\r\nMIME-Version: 1.0\r\n\r\n{html}\r\n"
            f"--{boundary}--\r\n"
        )
    return WireEmail(message_id, (headers + body).encode("ascii"))


def _plain_headers(
    message: OutgoingMessage, identity: EmailIdentity, now: datetime, message_id: str
) -> str | None:
    """Every header line as the stdlib would write it, or None if any is not plain."""
    reply_to = reply_address(identity, message.outbox_id)
    if not (
        _PLAIN_NAME.fullmatch(identity.display_name)
        and _PLAIN_ADDRESS.fullmatch(identity.sender)
        and _PLAIN_ADDRESS.fullmatch(reply_to)
        and _PLAIN_ADDRESS.fullmatch(message.to)
        and _PLAIN_ADDRESS.fullmatch(message_id[1:-1])
        and message_id[0] == "<"
        and message_id[-1] == ">"
    ):
        return None
    name = identity.display_name
    lines = [
        ("From", f"{name} <{identity.sender}>"),
        ("To", message.to),
        ("Subject", message.subject or ""),
        ("Date", format_datetime(now)),
        ("Message-ID", message_id),
        ("Reply-To", f"{name} <{reply_to}>"),
        *unsubscribe_headers(identity, message.patient_id).items(),
    ]
    for header, value in message.headers.items():
        refuse_reserved(header)
        if not _PLAIN_HEADER_NAME.fullmatch(header):
            return None
        lines.append((header, value))
    out = []
    for header, value in lines:
        line = f"{header}: {value}"
        if len(line) > _MAX_HEADER_LINE or not _PLAIN_VALUE.fullmatch(value):
            return None
        out.append(line + "\r\n")
    return "".join(out)


def _quoted_printable(text: str) -> str:
    """As ``email.contentmanager`` encodes a text part: lines re-joined with LF, UTF-8, QP."""
    lines = text.encode("utf-8").splitlines()
    normal = (b"\n".join(lines) + b"\n").decode("latin-1")
    return quoprimime.body_encode(normal, 76).replace("\n", "\r\n")
