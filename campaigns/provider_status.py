"""What providers tell us after a send: delivery callbacks and "the recipient unsubscribed".

Callbacks arrive late, twice and out of order, so a row only ever moves forward; a carrier
opt-out (Twilio 21610) is recorded as the patient's consent change, as a STOP would be.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.channels.base import OutgoingMessage
from campaigns.enrollments import apply_outcome, pacing_state
from campaigns.enums import EnrollmentState, MessageStatus
from campaigns.models import Enrollment, OutboxMessage, Patient
from campaigns.pacing import opt_out
from campaigns.patients import has_consent, record_consent

M = MessageStatus


def opt_out_recipient(
    session: Session, outgoing: OutgoingMessage, reason: str, *, now: datetime
) -> None:
    """The carrier says the patient unsubscribed: record it as consent, stop the program."""
    patient = session.get_one(Patient, outgoing.patient_id)
    record_consent(
        session,
        patient,
        outgoing.channel,
        granted=False,
        method="provider: recipient unsubscribed",
        by="provider",
        now=now,
    )
    live = session.scalars(
        select(Enrollment).where(
            Enrollment.patient_id == patient.id,
            Enrollment.state.in_(
                [EnrollmentState.ACTIVE, EnrollmentState.FLARE, EnrollmentState.PAUSED]
            ),
        )
    ).all()
    if outgoing.channel == patient.preferred_channel:
        for enrollment in live:
            outcome = opt_out(pacing_state(enrollment), f"provider: {reason}")
            apply_outcome(session, enrollment, outcome, actor="provider", now=now)


def provider_opt_out(session: Session, provider_id: str, reason: str, *, now: datetime) -> bool:
    """A delivery callback says the recipient unsubscribed (Twilio 21610 after queueing):
    the same consent change as a refused send; False when there is no consent left to revoke."""
    row = session.scalar(select(OutboxMessage).where(OutboxMessage.provider_id == provider_id))
    if row is None or not has_consent(session, row.patient_id, row.channel):
        return False
    outgoing = OutgoingMessage(
        outbox_id=row.id, patient_id=row.patient_id, channel=row.channel, to="", body_text=""
    )
    opt_out_recipient(session, outgoing, reason, now=now)
    return True


#: Provider statuses in the order a message moves through them; never move backwards.
_STATUS_RANK = {M.PLANNED: 0, M.SENDING: 1, M.UNKNOWN: 2, M.SENT: 2, M.DELIVERED: 3, M.FAILED: 3}


def record_provider_status(
    session: Session,
    provider_id: str,
    status: MessageStatus,
    *,
    now: datetime,
    error: str | None = None,
    outbox_id: int | None = None,
) -> bool:
    """Apply a delivery callback; out-of-order callbacks never move a row backwards.

    ``outbox_id`` (from the callback URL) finds a row whose provider id is not stored yet:
    a callback can beat the end of the batch that sent the message.
    """
    row = session.scalar(select(OutboxMessage).where(OutboxMessage.provider_id == provider_id))
    if row is None and outbox_id is not None:
        row = session.get(OutboxMessage, outbox_id)
        if row is None or row.provider_id is not None or row.status != M.SENDING:
            return False
        row.provider_id = provider_id
        row.sent_at = now
    if row is None or row.status == status or _STATUS_RANK[status] < _STATUS_RANK[row.status]:
        return False  # a repeated callback (or bounce report) changes nothing
    if _STATUS_RANK[status] == _STATUS_RANK[row.status]:
        return False  # delivered and failed are both final: the first one wins
    row.status = status
    if status == M.DELIVERED:
        row.delivered_at = now
    if status == M.FAILED and error:
        row.error = error[:500]
    return True
