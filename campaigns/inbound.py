"""What happens when a patient writes back: store it, parse it, honour it, adapt the pacing.

The raw text is always stored first; everything after is derived from it, so a parser
improvement can be replayed over history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from campaigns import pacing
from campaigns import reply_queries as queries
from campaigns.composer import compose_system
from campaigns.enrollments import apply_outcome, facts_by_id, pacing_state
from campaigns.enums import (
    AlertKind,
    AlertPriority,
    AlertStatus,
    Channel,
    MessagePurpose,
)
from campaigns.logs import get_logger
from campaigns.models import (
    Alert,
    Enrollment,
    Event,
    Patient,
)
from campaigns.outbox_plan import plan
from campaigns.patients import record_consent
from campaigns.replies import Keyword, ParsedReply, parse_reply
from campaigns.runtime import Runtime

ACTOR = "patient"
log = get_logger(__name__)
#: Which confirmation answers which pacing event.
CONFIRMATIONS = {"pause": "paused", "resume": "resumed", "slower": "slower"}


@dataclass
class ReplyResult:
    reply_id: int
    duplicate: bool
    parsed: ParsedReply | None = None
    responses: list[int] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)


def live_enrollment(session: Session, patient_id: int) -> tuple[Enrollment, str] | None:
    """The enrollment a reply applies to: the newest one not completed or withdrawn, with
    its version's checksum (the key of the cached pacing facts, so the version row and its
    JSON rules are not loaded per reply).

    Locked and re-read (PostgreSQL; SQLite transactions are already serial): a second text
    from the same patient, or a tick, waits for this reply's transaction and then sees its
    state, instead of failing on the row version and losing the patient's words.
    """
    row = session.execute(queries.LIVE_ENROLLMENT, {"patient_id": patient_id}).first()
    return (row[0], row[1]) if row is not None else None


def receive_reply(
    rt: Runtime,
    session: Session,
    patient: Patient,
    text: str,
    *,
    channel: Channel,
    now: datetime,
    provider_id: str | None = None,
    in_reply_to_id: int | None = None,
    provider_id_checked: bool = False,
    context: queries.ReplyContext | None = None,
) -> ReplyResult:
    """Store ``text`` once per ``provider_id`` and apply it. ``provider_id_checked`` says the
    caller already found no reply with that id in this transaction, and ``context`` is the
    live enrollment and answered message when the caller read them (the SMS webhook does both
    in its sender lookup, saving round trips); a concurrent duplicate still fails on the
    unique index at INSERT."""
    # PostgreSQL text cannot hold NUL: keep the patient's words, with NUL shown as U+FFFD.
    text = text.replace("\x00", "\ufffd")
    provider_id = provider_id.replace("\x00", "\ufffd") if provider_id is not None else None
    if provider_id is not None and not provider_id_checked:
        seen = session.scalar(queries.SEEN_REPLY, {"provider_id": provider_id})
        if seen is not None:
            return ReplyResult(seen, duplicate=True)
    live = live_enrollment(session, patient.id) if context is None else context.live
    enrollment = live[0] if live else None
    facts = facts_by_id(session, live[0].version_id, live[1]) if live else None
    rules = facts.rules if facts else pacing.PacingRules()
    parsed = parse_reply(text, flare_phrases=rules.flare_keywords)
    if in_reply_to_id is None and context is None:
        in_reply_to_id, prior = queries.answered_and_scores(
            session, patient.id, channel, now, limit=rules.baseline_window
        )
    else:
        if in_reply_to_id is None and context is not None:
            in_reply_to_id = context.answered_id
        prior = queries.recent_scores(session, patient.id, limit=rules.baseline_window)
    enrollment_id = enrollment.id if enrollment else None
    keywords = sorted(k.value for k in parsed.keywords)
    reply_id = queries.insert_reply(
        session,
        {
            "patient_id": patient.id,
            "enrollment_id": enrollment_id,
            "in_reply_to_id": in_reply_to_id,
            "channel": channel,
            "received_at": now,
            "raw_text": text,
            "pain_score": parsed.pain_score,
            "keywords": keywords,
            "flare_signal": parsed.is_flare_signal,
            "crisis": parsed.crisis,
            "provider_id": provider_id,
        },
    )
    result = ReplyResult(reply_id, duplicate=False, parsed=parsed)
    if parsed.crisis:
        _crisis(rt, session, patient, enrollment, reply_id, channel, result, now=now)
    _keywords(rt, session, patient, enrollment, parsed, channel, result, now=now)
    if enrollment is not None and facts is not None and Keyword.STOP not in parsed.keywords:
        outcome = pacing.apply_reply(
            pacing_state(enrollment), parsed, prior, rules, facts.shape, now=now
        )
        apply_outcome(session, enrollment, outcome, actor=ACTOR, now=now)
        for ev in outcome.events:
            if ev.kind in CONFIRMATIONS:
                _respond(
                    rt,
                    session,
                    patient,
                    CONFIRMATIONS[ev.kind],
                    channel,
                    MessagePurpose.CONFIRMATION,
                    result,
                    now=now,
                )
    session.flush()
    log.info(
        "reply",
        reply_id=reply_id,
        patient_id=patient.id,
        channel=channel.value,
        scored=parsed.pain_score is not None,
        keywords=keywords,
        flare_signal=parsed.is_flare_signal,
        crisis=parsed.crisis,
    )
    return result


def _respond(
    rt: Runtime,
    session: Session,
    patient: Patient,
    name: str,
    channel: Channel,
    purpose: MessagePurpose,
    result: ReplyResult,
    *,
    now: datetime,
) -> None:
    message = compose_system(rt, patient, name, channel)
    row = plan(session, patient_id=patient.id, message=message, purpose=purpose, now=now)
    if row is not None:
        result.responses.append(row.id)


def _crisis(
    rt: Runtime,
    session: Session,
    patient: Patient,
    enrollment: Enrollment | None,
    reply_id: int,
    channel: Channel,
    result: ReplyResult,
    *,
    now: datetime,
) -> None:
    """Never silent: a high-priority alert for staff and crisis resources for the patient."""
    alert = Alert(
        patient_id=patient.id,
        enrollment_id=enrollment.id if enrollment else None,
        reply_id=reply_id,
        kind=AlertKind.CRISIS,
        priority=AlertPriority.HIGH,
        status=AlertStatus.OPEN,
        summary="crisis language in a patient reply",
        created_at=now,
    )
    session.add(alert)
    session.flush()
    result.alerts.append(alert.id)
    session.add(
        Event(
            at=now,
            patient_id=patient.id,
            enrollment_id=enrollment.id if enrollment else None,
            actor=ACTOR,
            kind="crisis-alert",
            reason="crisis language: staff alerted, resources sent",
            data={"reply_id": reply_id, "alert_id": alert.id},
        )
    )
    _respond(rt, session, patient, "crisis", channel, MessagePurpose.CRISIS, result, now=now)


def _keywords(
    rt: Runtime,
    session: Session,
    patient: Patient,
    enrollment: Enrollment | None,
    parsed: ParsedReply,
    channel: Channel,
    result: ReplyResult,
    *,
    now: datetime,
) -> None:
    """STOP and START are consent changes, recorded as such; HELP is answered at once."""
    method = f"{channel.value} keyword"
    if Keyword.STOP in parsed.keywords:
        record_consent(
            session, patient, channel, granted=False, method=f"{method} STOP", by=ACTOR, now=now
        )
        if enrollment is not None and channel == patient.preferred_channel:
            apply_outcome(
                session,
                enrollment,
                pacing.opt_out(pacing_state(enrollment), f"patient sent STOP by {channel}"),
                actor=ACTOR,
                now=now,
            )
        _respond(
            rt, session, patient, "stopped", channel, MessagePurpose.CONFIRMATION, result, now=now
        )
    elif Keyword.START in parsed.keywords:
        record_consent(
            session, patient, channel, granted=True, method=f"{method} START", by=ACTOR, now=now
        )
        if enrollment is not None and channel == patient.preferred_channel:
            outcome = pacing.opt_in(
                pacing_state(enrollment), f"patient sent START by {channel}", now=now
            )
            apply_outcome(session, enrollment, outcome, actor=ACTOR, now=now)
        _respond(
            rt, session, patient, "started", channel, MessagePurpose.CONFIRMATION, result, now=now
        )
    if Keyword.HELP in parsed.keywords:
        _respond(rt, session, patient, "help", channel, MessagePurpose.HELP, result, now=now)
