"""The outbox: planned messages and their at-most-once delivery.

A row is claimed ``planned -> sending`` by a conditional UPDATE before the provider is
called, so a redelivered task cannot send twice; a crash after the call leaves it
``sending`` and the sweep marks it ``unknown`` for staff, never re-sending blindly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from campaigns.channels.base import DeliveryError, OutgoingMessage
from campaigns.enrollments import apply_outcome, clock_of, pacing_state
from campaigns.enums import Channel, EnrollmentState, MessagePurpose, MessageStatus
from campaigns.logs import get_logger
from campaigns.models import Enrollment, OutboxMessage, Patient, ProgramStep, ProgramVersion
from campaigns.pacing import opt_out
from campaigns.patients import has_consent, record_consent
from campaigns.rendering import RenderedMessage
from campaigns.runtime import Runtime
from campaigns.sendwindow import PatientClock

M = MessageStatus
log = get_logger(__name__)
#: A planned row not sent this long after it was due is handed to a send task again.
REDISPATCH_AFTER = timedelta(minutes=2)
#: A transient provider failure is retried by the redispatch sweep after this long.
RETRY_BACKOFF = timedelta(minutes=3)
#: Answers to a patient (HELP, crisis, confirmations) must fit this many SMS segments.
SYSTEM_SMS_SEGMENTS = 2


class DeliveryResult(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    WITHHELD = "withheld"
    NOT_CLAIMED = "not-claimed"
    UNKNOWN = "unknown"


def plan(
    session: Session,
    *,
    patient_id: int,
    message: RenderedMessage,
    purpose: MessagePurpose,
    now: datetime,
    enrollment_id: int | None = None,
    step_id: int | None = None,
    occurrence: int = 0,
    local_date: date | None = None,
) -> OutboxMessage | None:
    """Insert one planned row; returns None when that (enrollment, step, occurrence) exists."""
    row = OutboxMessage(
        patient_id=patient_id,
        enrollment_id=enrollment_id,
        step_id=step_id,
        occurrence=occurrence,
        purpose=purpose,
        channel=message.channel,
        subject=message.subject,
        body_text=message.body_text,
        body_html=message.body_html,
        status=M.PLANNED,
        planned_at=now,
        local_date=local_date,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        return None
    return row


def _claim(session: Session, outbox_id: int, now: datetime) -> bool:
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == outbox_id, OutboxMessage.status == M.PLANNED)
        .values(status=M.SENDING, sending_at=now, attempts=OutboxMessage.attempts + 1)
    )
    return getattr(result, "rowcount", 0) == 1


def _address(patient: Patient, channel: Channel) -> str | None:
    return patient.phone_e164 if channel == Channel.SMS else patient.email


def _withhold_reason(session: Session, row: OutboxMessage, patient: Patient) -> str | None:
    """Consent and opt-out are checked again at send time: STOP wins over anything planned.

    Answers to a patient's own message (confirmations, HELP, crisis resources) need no
    program consent: carriers require the STOP/HELP answers, and crisis text is never held.
    """
    if row.purpose != MessagePurpose.PROGRAM:
        return None if _address(patient, row.channel) else "no address"
    if not has_consent(session, patient.id, row.channel):
        return f"withheld: no {row.channel.value} consent"
    if row.enrollment_id is not None:
        state = session.scalar(select(Enrollment.state).where(Enrollment.id == row.enrollment_id))
        if state in (EnrollmentState.OPTED_OUT, EnrollmentState.WITHDRAWN):
            return f"withheld: enrollment {state.value}"
    if not _address(patient, row.channel):
        return f"withheld: no {row.channel.value} address"
    return None


def deliver(rt: Runtime, outbox_id: int, *, now: datetime) -> DeliveryResult:
    """Send one outbox row at most once; program messages wait for the patient's window."""
    result = _deliver(rt, outbox_id, now=now)
    log.info("deliver", outbox_id=outbox_id, result=result.value)
    return result


def _deliver(rt: Runtime, outbox_id: int, *, now: datetime) -> DeliveryResult:
    if rt.limiter is not None:
        with rt.session() as session:
            channel = session.scalar(
                select(OutboxMessage.channel).where(
                    OutboxMessage.id == outbox_id, OutboxMessage.status == M.PLANNED
                )
            )
        if channel is None:
            return DeliveryResult.NOT_CLAIMED
        rt.limiter.wait(channel)  # outside any transaction: never hold a lock while waiting
    with rt.session() as session:
        row = session.get(OutboxMessage, outbox_id)
        if row is None or row.status != M.PLANNED:
            return DeliveryResult.NOT_CLAIMED
        patient = session.get_one(Patient, row.patient_id)
        clock = clock_of(patient, rt.window)
        if row.purpose == MessagePurpose.PROGRAM and not clock.in_window(now):
            _defer_to_next_window(session, row, clock, now=now)
            return DeliveryResult.DEFERRED
        reason = _withhold_reason(session, row, patient)
        if reason is not None:
            row.status, row.error = M.FAILED, reason
            return DeliveryResult.WITHHELD
        if not _claim(session, outbox_id, now):
            return DeliveryResult.NOT_CLAIMED
        outgoing = OutgoingMessage(
            outbox_id=row.id,
            patient_id=patient.id,
            channel=row.channel,
            to=_address(patient, row.channel) or "",
            body_text=row.body_text,
            subject=row.subject,
            body_html=row.body_html,
            max_segments=_segment_limit(session, row),
        )
    return _call_provider(rt, outgoing, now=now)


def _defer_to_next_window(
    session: Session, row: OutboxMessage, clock: PatientClock, *, now: datetime
) -> None:
    """The message now belongs to the morning it will go out on, so the enrollment's next
    message moves a day too: still one program message a day, still in order."""
    row.planned_at = clock.next_slot(now)
    day = clock.local_date(row.planned_at)
    row.local_date = day
    enrollment = session.get(Enrollment, row.enrollment_id) if row.enrollment_id else None
    if enrollment is None or (enrollment.last_program_send_on or day) > day:
        return
    enrollment.last_program_send_on = day
    after = clock.slot(day + timedelta(days=max(enrollment.cadence_days, 1)))
    if enrollment.next_due_at is not None and enrollment.next_due_at < after:
        enrollment.next_due_at = after


def _segment_limit(session: Session, row: OutboxMessage) -> int:
    if row.step_id is None:
        return SYSTEM_SMS_SEGMENTS
    limit = session.scalar(
        select(ProgramVersion.sms_max_segments)
        .join(ProgramStep, ProgramStep.version_id == ProgramVersion.id)
        .where(ProgramStep.id == row.step_id)
    )
    return limit or SYSTEM_SMS_SEGMENTS


def _call_provider(rt: Runtime, outgoing: OutgoingMessage, *, now: datetime) -> DeliveryResult:
    transport = rt.transports[outgoing.channel]
    try:
        receipt = transport.send(outgoing)
    except DeliveryError as exc:
        return _record_failure(rt, outgoing, exc, now=now)
    with rt.session() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outgoing.outbox_id, OutboxMessage.status == M.SENDING)
            .values(status=M.SENT, sent_at=now, provider_id=receipt.provider_id[:100], error=None)
        )
    return DeliveryResult.SENT


def _record_failure(
    rt: Runtime, outgoing: OutgoingMessage, exc: DeliveryError, *, now: datetime
) -> DeliveryResult:
    """Permanent: failed with the reason. Transient: planned again after a back-off.
    Ambiguous: ``unknown``, never retried blindly."""
    backoff = timedelta(seconds=exc.retry_after) if exc.retry_after else RETRY_BACKOFF
    with rt.session() as session:
        status = M.UNKNOWN if exc.ambiguous else M.FAILED if exc.permanent else M.PLANNED
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outgoing.outbox_id, OutboxMessage.status == M.SENDING)
            .values(status=status, error=exc.reason[:500], planned_at=now + backoff)
        )
        if exc.opted_out:
            _provider_opt_out(session, outgoing, exc.reason, now=now)
    if exc.ambiguous:
        return DeliveryResult.UNKNOWN
    return DeliveryResult.FAILED if exc.permanent else DeliveryResult.DEFERRED


def _provider_opt_out(
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
    _provider_opt_out(session, outgoing, reason, now=now)
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
    if row is None or _STATUS_RANK[status] < _STATUS_RANK[row.status]:
        return False
    if _STATUS_RANK[status] == _STATUS_RANK[row.status] and status != row.status:
        return False  # delivered and failed are both final: the first one wins
    row.status = status
    if status == M.DELIVERED:
        row.delivered_at = now
    if status == M.FAILED and error:
        row.error = error[:500]
    return True


def redispatchable(session: Session, *, now: datetime, limit: int = 1000) -> Sequence[int]:
    """Planned rows whose send task was lost or deferred: hand them out again."""
    return session.scalars(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == M.PLANNED, OutboxMessage.planned_at <= now - REDISPATCH_AFTER
        )
        .order_by(OutboxMessage.planned_at, OutboxMessage.id)
        .limit(limit)
    ).all()


def sweep_stale_sending(session: Session, *, now: datetime, stale_after: timedelta) -> int:
    """A row stuck in ``sending`` may or may not have gone out: say so, never resend blindly."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == M.SENDING, OutboxMessage.sending_at <= now - stale_after)
        .values(status=M.UNKNOWN, error="provider call did not complete; delivery unknown")
    )
    return int(getattr(result, "rowcount", 0))
