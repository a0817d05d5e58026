"""Delivery reports (bounces) for program email.

Every email goes out with a VERP envelope sender (``bounce+<outbox id>-<tag>@reply domain``),
so a bounce names the exact message that failed. A permanent failure (DSN ``Action: failed``,
status 5.x.x) fails that outbox row and tells staff, who can fix the address; a temporary one
(4.x.x, ``delayed``) changes nothing, because the remote server keeps trying on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.email_headers import read_bounce_address
from campaigns.enums import AlertKind, AlertPriority, AlertStatus, Channel, MessageStatus
from campaigns.logs import get_logger
from campaigns.models import Alert, OutboxMessage
from campaigns.provider_status import record_provider_status

log = get_logger(__name__)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MSGID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class Bounce:
    """What a delivery report says, without any address in it (safe to log and store)."""

    permanent: bool
    status: str | None
    original_message_id: str | None


def read_report(message: EmailMessage) -> Bounce | None:
    """The report in an RFC 3464 ``multipart/report``, or None if this is not one."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return None
    actions, statuses, original = [], [], None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            for block in _status_blocks(part):
                if action := str(block.get("Action", "")).strip().lower():
                    actions.append(action)
                if match := _STATUS.search(str(block.get("Status", ""))):
                    statuses.append(match.group(0))
        elif kind in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = _original_message_id(part)
    if not actions and not statuses:
        return None
    permanent = "failed" in actions or any(s.startswith("5.") for s in statuses)
    return Bounce(permanent, statuses[0] if statuses else None, original)


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _original_message_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        value = str(payload[0].get("Message-ID", ""))
    else:
        text = payload if isinstance(payload, str) else ""
        header = re.search(r"^Message-ID:\s*(.+)$", text, re.IGNORECASE | re.MULTILINE)
        value = header.group(1) if header else ""
    found = _MSGID.search(value)
    return found.group(0) if found else None


def bounced_row(
    session: Session,
    bounce: Bounce,
    recipients: tuple[str, ...],
    *,
    key: bytes,
    reply_domain: str,
) -> OutboxMessage | None:
    """Our VERP address first (it cannot be forged), then the original Message-ID."""
    for address in recipients:
        outbox_id = read_bounce_address(key, reply_domain, address)
        if outbox_id is not None:
            row = session.get(OutboxMessage, outbox_id)
            if row is not None and row.channel == Channel.EMAIL:
                return row
    if bounce.original_message_id:
        return session.scalar(
            select(OutboxMessage).where(
                OutboxMessage.provider_id == bounce.original_message_id,
                OutboxMessage.channel == Channel.EMAIL,
            )
        )
    return None


def record_bounce(session: Session, row: OutboxMessage, bounce: Bounce, *, now: datetime) -> bool:
    """Fail the row and alert staff on a permanent bounce; True if anything changed."""
    if not bounce.permanent or row.provider_id is None:
        log.info("email-delayed", outbox_id=row.id, status=bounce.status)
        return False
    code = bounce.status or "5.0.0"
    changed = record_provider_status(
        session, row.provider_id, MessageStatus.FAILED, now=now, error=f"bounced {code}"
    )
    if changed:
        session.add(
            Alert(
                patient_id=row.patient_id,
                enrollment_id=row.enrollment_id,
                kind=AlertKind.EMAIL_BOUNCED,
                priority=AlertPriority.NORMAL,
                status=AlertStatus.OPEN,
                summary=f"An email to this patient bounced ({code}): check their address",
                created_at=now,
            )
        )
    log.info("email-bounced", outbox_id=row.id, status=code, changed=changed)
    return changed
