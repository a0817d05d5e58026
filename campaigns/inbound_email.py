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
from email.message import EmailMessage
from email.parser import BytesParser

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.bounces import Bounce, bounced_row, read_report, record_bounce
from campaigns.email_headers import MAX_MESSAGE_ID, read_reply_address, read_unsubscribe_subject
from campaigns.email_text import body_text, new_words
from campaigns.enrollments import apply_outcome, pacing_state
from campaigns.enums import Channel, EnrollmentState
from campaigns.inbound import receive_reply
from campaigns.logs import get_logger
from campaigns.models import Enrollment, OutboxMessage, Patient
from campaigns.pacing import opt_out
from campaigns.patients import has_consent, record_consent
from campaigns.runtime import Runtime
from campaigns.tokens import InvalidToken, UnsubscribeClaim, read_unsubscribe_token

log = get_logger(__name__)
ACTOR = "patient"
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
    #: A delivery report (bounce) about one of our messages, if this is one.
    report: Bounce | None = None


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
    if parsed.report is not None:
        return _delivery_report(rt, session, parsed, parsed.report, now=now)
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


def _delivery_report(
    rt: Runtime, session: Session, parsed: ParsedEmail, report: Bounce, *, now: datetime
) -> EmailOutcome:
    row = bounced_row(
        session,
        report,
        parsed.recipients,
        key=rt.settings.signing_key,
        reply_domain=rt.settings.reply_domain,
    )
    if row is None:
        raise UnmatchedEmail("the delivery report does not name any message we sent")
    changed = record_bounce(session, row, report, now=now)
    what = "bounce recorded" if changed else "no change"
    return EmailOutcome(in_reply_to_id=row.id, ignored=f"delivery report: {what}")


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
    report = read_report(message)
    body = body_text(message)
    if body is None and report is None:
        raise UnparseableEmail("no text in the email")
    return ParsedEmail(
        message_id=_first_id(message.get("Message-ID")),
        thread_ids=_thread_ids(message),
        recipients=_recipients(message),
        sender=senders[0] if senders else None,
        subject=str(message.get("Subject", "")),
        body=body or "",
        automatic=_is_automatic(message),
        report=report,
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
