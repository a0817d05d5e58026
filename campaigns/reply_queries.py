"""The statements every patient reply runs, built once at import.

A webhook runs the same handful of statements for every text. Building a SQLAlchemy statement
per call costs more CPU than running it on a warm connection: each call coerces every argument
and then walks the new tree to compute the cache key under which the compiled SQL is found.
Built once with bound parameters, a statement keeps its memoized cache key, so each execution
goes straight to the compiled SQL. Rows are written as Core INSERTs where nothing needs the
ORM's unit of work (no object is used after the write but its id).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, literal, select, true
from sqlalchemy.orm import Session

from campaigns.enums import Channel, EnrollmentState, MessageStatus
from campaigns.models import (
    Enrollment,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    ProgramVersion,
)

_replies = cast(Table, InboundReply.__table__)
_pain_reports = cast(Table, PainReport.__table__)

#: The patient whose number hashes (current key, then retired ones) match, and the id of a
#: reply already stored under this MessageSid.
SENDER_AND_SEEN = (
    select(
        Patient,
        select(InboundReply.id)
        .where(InboundReply.provider_id == bindparam("message_sid"))
        .limit(1)
        .scalar_subquery(),
    )
    .where(Patient.phone_hash.in_(bindparam("phone_hashes", expanding=True)))
    .limit(1)
)

SEEN_REPLY = select(InboundReply.id).where(InboundReply.provider_id == bindparam("provider_id"))

#: The newest live enrollment, locked, with its version's checksum (see
#: ``inbound.live_enrollment``).
LIVE_ENROLLMENT = (
    select(Enrollment, ProgramVersion.checksum)
    .join(ProgramVersion, ProgramVersion.id == Enrollment.version_id)
    .where(
        Enrollment.patient_id == bindparam("patient_id"),
        Enrollment.state.not_in([EnrollmentState.COMPLETED, EnrollmentState.WITHDRAWN]),
    )
    .order_by(Enrollment.id.desc())
    .limit(1)
    .with_for_update(of=Enrollment)
    .execution_options(populate_existing=True)
)

_answered = (
    select(OutboxMessage.id)
    .where(
        OutboxMessage.patient_id == bindparam("patient_id"),
        OutboxMessage.channel == bindparam("channel"),
        OutboxMessage.status.in_([MessageStatus.SENT, MessageStatus.DELIVERED]),
        OutboxMessage.sent_at <= bindparam("now"),
    )
    .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc())
    .limit(1)
    .scalar_subquery()
)
_scores = (
    select(PainReport.score, PainReport.reported_at, PainReport.id)
    .where(PainReport.patient_id == bindparam("patient_id"))
    .order_by(PainReport.reported_at.desc(), PainReport.id.desc())
    .limit(bindparam("limit", type_=_pain_reports.c.id.type))
    .subquery()
)
_anchor = select(literal(1).label("one")).subquery()
#: One row per recent score (newest first), each carrying the answered message, or one row
#: of NULL scores (see ``answered_and_scores``).
ANSWERED_AND_SCORES = (
    select(_answered, _scores.c.score)
    .select_from(_anchor.outerjoin(_scores, true()))
    .order_by(_scores.c.reported_at.desc(), _scores.c.id.desc())
)

INSERT_REPLY = insert(_replies).returning(_replies.c.id)
INSERT_PAIN_REPORT = insert(_pain_reports)


def sender_and_seen(
    session: Session, phone_hashes: list[str], message_sid: str
) -> tuple[Patient | None, int | None]:
    row = session.execute(
        SENDER_AND_SEEN, {"phone_hashes": phone_hashes, "message_sid": message_sid}
    ).first()
    return (row[0], row[1]) if row is not None else (None, None)


def answered_and_scores(
    session: Session, patient_id: int, channel: Channel, now: datetime, *, limit: int
) -> tuple[int | None, list[float]]:
    """The newest message that reached the patient on ``channel`` (what the reply answers)
    and ``composer.recent_scores`` (oldest first), in one round trip."""
    rows = session.execute(
        ANSWERED_AND_SCORES,
        {"patient_id": patient_id, "channel": channel, "now": now, "limit": limit},
    ).all()
    answered = rows[0][0] if rows else None
    return answered, [row[1] for row in reversed(rows) if row[1] is not None]


def insert_reply(session: Session, values: dict[str, Any]) -> int:
    """One INSERT .. RETURNING id of an ``inbound_replies`` row from column values."""
    reply_id: int = session.execute(INSERT_REPLY, values).scalar_one()
    return reply_id


def insert_pain_report(session: Session, values: dict[str, Any]) -> None:
    session.execute(INSERT_PAIN_REPORT, values)
