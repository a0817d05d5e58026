"""Email replies: from raw MIME to the patient's new words, handed to ``receive_reply``.

The webhook and the IMAP poller both call :func:`receive_email`, so a message stores the
same reply whichever way it arrives. Only what the patient wrote is stored and parsed: the
quoted program email below it says "Reply STOP to opt out", and a quoted STOP must never
unsubscribe anyone.

A reply is matched to the email it answers by its threading headers (our Message-IDs are
stored as the outbox ``provider_id``), else by the signed ``reply+...`` address it was sent
to. The sender's ``From`` alone is never trusted to pick a patient: it is trivially forged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from html.parser import HTMLParser

from mailparser_reply import EmailMessage as ReplyThread
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.email_headers import MAX_MESSAGE_ID, read_reply_address, read_unsubscribe_subject
from campaigns.enrollments import apply_outcome, pacing_state
from campaigns.enums import Channel, EnrollmentState
from campaigns.inbound import receive_reply
from campaigns.logs import get_logger
from campaigns.models import Enrollment, OutboxMessage, Patient
from campaigns.pacing import opt_out
from campaigns.patients import has_consent, record_consent
from campaigns.replies import parse_reply
from campaigns.runtime import Runtime
from campaigns.tokens import InvalidToken, UnsubscribeClaim, read_unsubscribe_token

log = get_logger(__name__)
ACTOR = "patient"
#: A longer "signature" is more likely the patient's own words after a "Thanks," line.
MAX_SIGNATURE_LINES = 6
#: Enough threading ids to find ours in any real conversation; bounds the lookup query.
MAX_THREAD_IDS = 50
_MSGID = re.compile(r"<[^<>\s]+>")
_AUTOMATIC_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_AUTOMATIC_SENDERS = ("mailer-daemon@", "postmaster@")
_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


class InboundEmailError(ValueError):
    """A message that cannot become a reply; ``reason`` is safe to show (no addresses)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnparseableEmail(InboundEmailError):
    pass


class UnmatchedEmail(InboundEmailError):
    pass


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    #: In-Reply-To first, then References newest first: the likeliest match comes first.
    thread_ids: tuple[str, ...]
    recipients: tuple[str, ...]
    sender: str | None
    subject: str
    #: The decoded text (or text from the HTML), quotes and signature included.
    body: str
    #: Auto-reply, bounce or list traffic (RFC 3834): never a patient's words.
    automatic: bool


@dataclass
class EmailOutcome:
    reply_id: int | None = None
    duplicate: bool = False
    responses: list[int] = field(default_factory=list)
    in_reply_to_id: int | None = None
    unsubscribed: bool = False
    ignored: str | None = None


# --- receiving ------------------------------------------------------------------------------


def receive_email(rt: Runtime, session: Session, raw: bytes, *, now: datetime) -> EmailOutcome:
    """Store one inbound email as a reply; raises :class:`InboundEmailError` storing nothing."""
    parsed = parse_email(raw)
    token = read_unsubscribe_subject(parsed.subject)
    if token is not None:
        return _unsubscribe_by_mail(rt, session, token, now=now)
    if parsed.automatic:
        log.info("email-ignored", reason="automatic")
        return EmailOutcome(ignored="automatic reply")
    row = find_answered(rt, session, parsed)
    patient = session.get(Patient, row.patient_id) if row is not None else None
    if row is None or patient is None:
        raise UnmatchedEmail("the email does not answer any message we sent")
    result = receive_reply(
        rt,
        session,
        patient,
        new_words(parsed.body),
        channel=Channel.EMAIL,
        now=now,
        provider_id=provider_key(parsed, raw),
        in_reply_to_id=row.id,
    )
    log.info(
        "email-reply",
        reply_id=result.reply_id,
        outbox_id=row.id,
        duplicate=result.duplicate,
        sender_is_patient=_same_address(parsed.sender, patient.email),
    )
    return EmailOutcome(result.reply_id, result.duplicate, result.responses, row.id)


def find_answered(rt: Runtime, session: Session, parsed: ParsedEmail) -> OutboxMessage | None:
    """The email this one answers: threading headers first, then the reply+ address."""
    if parsed.thread_ids:
        rows = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.provider_id.in_(parsed.thread_ids),
                OutboxMessage.channel == Channel.EMAIL,
            )
        ).all()
        by_id = {row.provider_id: row for row in rows}
        for message_id in parsed.thread_ids:
            if message_id in by_id:
                return by_id[message_id]
    key, domain = rt.settings.signing_key, rt.settings.reply_domain
    for address in parsed.recipients:
        outbox_id = read_reply_address(key, domain, address)
        row = session.get(OutboxMessage, outbox_id) if outbox_id is not None else None
        if row is not None and row.channel == Channel.EMAIL:
            return row
    return None


def provider_key(parsed: ParsedEmail, raw: bytes) -> str:
    """Dedupe key: the Message-ID, hashed when too long to store; without one, the bytes."""
    if parsed.message_id is None:
        return "sha256:" + hashlib.sha256(raw).hexdigest()[:64]
    if len(parsed.message_id) <= MAX_MESSAGE_ID:
        return parsed.message_id
    return "mid-sha256:" + hashlib.sha256(parsed.message_id.encode()).hexdigest()[:64]


def _same_address(sender: str | None, email: str | None) -> bool:
    return bool(sender and email and sender.lower() == email.lower())


# --- unsubscribing --------------------------------------------------------------------------


def unsubscribe(session: Session, claim: UnsubscribeClaim, *, method: str, now: datetime) -> bool:
    """Revoke consent for the claim's channel; opt out if it is the patient's channel.

    Idempotent: a second request records nothing. Returns whether anything changed; raises
    LookupError when the patient no longer exists.
    """
    patient = session.get(Patient, claim.patient_id)
    if patient is None:
        raise LookupError("no such patient")
    changed = False
    if has_consent(session, patient.id, claim.channel):
        record_consent(
            session, patient, claim.channel, granted=False, method=method, by=ACTOR, now=now
        )
        changed = True
    if claim.channel == patient.preferred_channel:
        for enrollment in _live_enrollments(session, patient.id):
            outcome = opt_out(pacing_state(enrollment), f"patient unsubscribed: {method}")
            apply_outcome(session, enrollment, outcome, actor=ACTOR, now=now)
            changed = True
    log.info("unsubscribe", patient_id=patient.id, channel=claim.channel.value, changed=changed)
    return changed


def _live_enrollments(session: Session, patient_id: int) -> Iterable[Enrollment]:
    live = [EnrollmentState.ACTIVE, EnrollmentState.FLARE, EnrollmentState.PAUSED]
    return session.scalars(
        select(Enrollment).where(Enrollment.patient_id == patient_id, Enrollment.state.in_(live))
    ).all()


def _unsubscribe_by_mail(
    rt: Runtime, session: Session, token: str, *, now: datetime
) -> EmailOutcome:
    """The List-Unsubscribe mailto: honoured whoever sent it, because the token is signed."""
    try:
        claim = read_unsubscribe_token(rt.settings.signing_key, token)
        unsubscribe(session, claim, method="email unsubscribe request", now=now)
    except (InvalidToken, LookupError):
        raise UnmatchedEmail("the unsubscribe request's link is invalid or expired") from None
    return EmailOutcome(unsubscribed=True)


# --- parsing --------------------------------------------------------------------------------


def parse_email(raw: bytes) -> ParsedEmail:
    if not raw.strip():
        raise UnparseableEmail("empty message")
    message = BytesParser(policy=policy.default).parsebytes(raw)
    try:
        return _parsed(message)
    except InboundEmailError:
        raise
    except (HeaderParseError, IndexError, TypeError, ValueError, LookupError) as exc:
        raise UnparseableEmail(f"malformed email ({type(exc).__name__})") from None


def _parsed(message: EmailMessage) -> ParsedEmail:
    if not (message["From"] or message["Message-ID"]):
        raise UnparseableEmail("not an email: no From or Message-ID header")
    senders = _addresses(message, "From")
    return ParsedEmail(
        message_id=_first_id(message.get("Message-ID")),
        thread_ids=_thread_ids(message),
        recipients=_recipients(message),
        sender=senders[0] if senders else None,
        subject=str(message.get("Subject", "")),
        body=_body_text(message),
        automatic=_is_automatic(message),
    )


def _first_id(value: object) -> str | None:
    ids = _MSGID.findall(str(value)) if value is not None else []
    return ids[0] if ids else None


def _thread_ids(message: EmailMessage) -> tuple[str, ...]:
    in_reply_to = _MSGID.findall(str(message.get("In-Reply-To", "")))
    references = _MSGID.findall(str(message.get("References", "")))
    ordered = dict.fromkeys([*in_reply_to, *reversed(references)])
    return tuple(ordered)[:MAX_THREAD_IDS]


def _addresses(message: EmailMessage, name: str) -> list[str]:
    found: list[str] = []
    for header in message.get_all(name, []):
        for address in getattr(header, "addresses", ()):
            if address.addr_spec and "@" in address.addr_spec:
                found.append(address.addr_spec)
        if not getattr(header, "addresses", None):  # Delivered-To is not an address header
            found.extend(re.findall(r"[^\s<>,;\"]+@[^\s<>,;\"]+", str(header)))
    return found


def _recipients(message: EmailMessage) -> tuple[str, ...]:
    found = [a for name in _RECIPIENT_HEADERS for a in _addresses(message, name)]
    return tuple(dict.fromkeys(found))


def _is_automatic(message: EmailMessage) -> bool:
    auto = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    sender = str(message.get("From", "")).lower()
    return (
        auto != "no"
        or precedence in _AUTOMATIC_PRECEDENCE
        or message.get("X-Autoreply") is not None
        or message.get("X-Autorespond") is not None
        or message.get_content_type() == "multipart/report"
        or any(s in sender for s in _AUTOMATIC_SENDERS)
    )


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        raise UnparseableEmail("no text in the email")
    text = _decoded(part)
    return html_to_text(text) if part.get_content_type() == "text/html" else text


def _decoded(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


# --- the patient's new words ----------------------------------------------------------------


_QUOTED = re.compile(r"^[ \t]*>.*(?:\n|$)", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^[ \t]*on\b[^\n]{0,300}\bwrote:[ \t]*(?:\n|$)", re.I | re.M)
_FALLBACK_CUT = re.compile(
    r"^[ \t]*(?:on\b.{0,300}\bwrote:[ \t]*$|-{2,}[ \t]*original message|_{10,}[ \t]*$"
    r"|from:[ \t].*\n[ \t]*(?:sent|date):|--[ \t]*$|sent from my\b|get outlook for\b)",
    re.IGNORECASE | re.MULTILINE,
)


def new_words(body: str) -> str:
    """What the patient wrote above (or between) the quoted email, without signatures.

    ``mailparser_reply`` splits the thread at "On ... wrote:" and Outlook "From:/Sent:"
    headers and finds signatures; ">" lines are dropped after it. Two guards keep a
    patient's words from being mistaken for cruft: a "signature" longer than a few lines
    is kept, and if dropping the signature would hide crisis language, it is kept too.
    """
    text = body.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    try:
        words = _library_words(text)
    except Exception:  # a parser bug must not lose the reply: fall back
        words = None
    return words if words is not None else _fallback_words(text)


def _library_words(text: str) -> str | None:
    replies = ReplyThread(text=text, languages=["en"], keep_hyphen_lists=True).read().replies
    for reply in replies:
        with_signature = _unquoted(reply.full_body)
        without = _unquoted(reply.body)
        if not with_signature:
            continue
        if not without or len(reply.signatures.splitlines()) > MAX_SIGNATURE_LINES:
            return with_signature
        if parse_reply(with_signature).crisis and not parse_reply(without).crisis:
            return with_signature
        return without
    return None


def _fallback_words(text: str) -> str:
    cut = _FALLBACK_CUT.search(text)
    head = text[: cut.start()] if cut else text
    return _unquoted(head) or _unquoted(text)


def _unquoted(text: str) -> str:
    return _ATTRIBUTION.sub("", _QUOTED.sub("", text)).strip()


# --- HTML-only replies ----------------------------------------------------------------------


_BLOCKS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
)
_SKIPPED = frozenset({"head", "style", "script", "title", "template"})
_QUOTE_CLASSES = ("yahoo_quoted",)  # Yahoo quotes in a div, not a blockquote
_OUTLOOK_SEPARATOR = "_" * 32


class _TextExtractor(HTMLParser):
    """Text with line breaks where blocks end; blockquote content becomes "> " lines so
    the same quote stripping serves plain-text and HTML-only replies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._quote_depth = 0
        self._line_depth = 0
        self._skip = 0
        self._stack: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip = 0  # an unclosed <head> must not hide the whole message
        if tag in _SKIPPED:
            self._skip += 1
        quoting = tag == "blockquote" or any(
            name == "class" and value and any(c in value for c in _QUOTE_CLASSES)
            for name, value in attrs
        )
        if tag not in ("br", "hr", "img", "meta", "link", "input"):
            self._stack.append((tag, quoting))
        if tag in _BLOCKS:
            self._break()
        if tag == "hr":  # Outlook puts one above the quoted message's From:/Sent: block
            self._break()
            self.lines.extend(["", _OUTLOOK_SEPARATOR])
        if quoting:
            self._break()
            self._quote_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._break()
        if all(open_tag != tag for open_tag, _ in self._stack):
            return  # a stray end tag closes nothing
        while self._stack:
            open_tag, quoting = self._stack.pop()
            if quoting:
                self._break()
                self._quote_depth -= 1
            if open_tag in _SKIPPED:
                self._skip -= 1
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._line:
            self._line_depth = self._quote_depth
        self._line.append(data)

    def _break(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._line)).strip()
        self._line = []
        if text:
            self.lines.append("> " * self._line_depth + text)

    def text(self) -> str:
        self._break()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return extractor.text()
