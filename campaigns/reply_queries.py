"""The statements every patient reply runs, built once at import.

A webhook runs the same handful of statements for every text. Building a SQLAlchemy statement
per call costs more CPU than running it on a warm connection: each call coerces every argument
and then walks the new tree to compute the cache key under which the compiled SQL is found.
Built once with bound parameters, a statement keeps its memoized cache key, so each execution
goes straight to the compiled SQL. Rows are written as Core INSERTs where nothing needs the
ORM's unit of work (no object is used after the write but its id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, ScalarSelect, Table, bindparam, insert, literal, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session, defer

from campaigns.db import dialect_of
from campaigns.enums import REACHED, Channel, EnrollmentState
from campaigns.models import (
    Enrollment,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    ProgramVersion,
    outbox_status_in,
)

_replies = cast(Table, InboundReply.__table__)
_pain_reports = cast(Table, PainReport.__table__)

_seen = (
    select(InboundReply.id)
    .where(InboundReply.provider_id == bindparam("message_sid"))
    .limit(1)
    .scalar_subquery()
)
_sender = Patient.phone_hash.in_(bindparam("phone_hashes", expanding=True))
_live = Enrollment.state.not_in([EnrollmentState.COMPLETED, EnrollmentState.WITHDRAWN])

#: A reply never needs the sender's address or number in clear: loading them would decrypt
#: both (~45 µs each, and health data held in memory for nothing). Read on access if ever.
_CONTACT_DEFERRED = (defer(Patient.email), defer(Patient.phone_e164))

#: The patient whose number hashes (current key, then retired ones) match, and the id of a
#: reply already stored under this MessageSid.
SENDER_AND_SEEN = select(Patient, _seen).where(_sender).limit(1).options(*_CONTACT_DEFERRED)

SEEN_REPLY = select(InboundReply.id).where(InboundReply.provider_id == bindparam("provider_id"))

#: The newest live enrollment, locked, with its version's checksum (see
#: ``inbound.live_enrollment``).
LIVE_ENROLLMENT = (
    select(Enrollment, ProgramVersion.checksum)
    .join(ProgramVersion, ProgramVersion.id == Enrollment.version_id)
    .where(Enrollment.patient_id == bindparam("patient_id"), _live)
    .order_by(Enrollment.id.desc())
    .limit(1)
    .with_for_update(of=Enrollment)
    .execution_options(populate_existing=True)
)


def _answered_by(
    patient_id: ColumnElement[int] | InstrumentedAttribute[int],
) -> ScalarSelect[int]:
    """The newest message that reached the patient on the reply's channel: what it answers."""
    return (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.patient_id == patient_id,
            OutboxMessage.channel == bindparam("channel"),
            # Written into the SQL, not bound: SQLite uses a partial index (``ix_outbox_answered``)
            # only when the query's own text implies its predicate.
            outbox_status_in(REACHED),
            OutboxMessage.sent_at <= bindparam("now"),
        )
        .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc())
        .limit(1)
        .scalar_subquery()
    )


_answered = _answered_by(bindparam("patient_id"))
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

#: ``SENDER_AND_SEEN``, ``LIVE_ENROLLMENT`` and the message the text answers in one round trip,
#: for a sender with a live enrollment (most texts). No row: an unknown number or nobody in
#: a program, for which ``SENDER_AND_SEEN`` is asked instead.
SENDER_CONTEXT = (
    select(Patient, _seen, Enrollment, ProgramVersion.checksum, _answered_by(Patient.id))
    .join(Enrollment, Enrollment.patient_id == Patient.id)
    .join(ProgramVersion, ProgramVersion.id == Enrollment.version_id)
    .where(_sender, _live)
    .order_by(Enrollment.id.desc())
    .limit(1)
    .with_for_update(of=Enrollment)
    .execution_options(populate_existing=True)
    .options(*_CONTACT_DEFERRED)
)

#: A patient's newest pain scores (``recent_scores``).
RECENT_SCORES = (
    select(PainReport.score)
    .where(PainReport.patient_id == bindparam("patient_id"))
    .order_by(PainReport.reported_at.desc(), PainReport.id.desc())
    .limit(bindparam("limit", type_=_pain_reports.c.id.type))
)

INSERT_REPLY = insert(_replies).returning(_replies.c.id)
INSERT_PAIN_REPORT = insert(_pain_reports)

#: The columns ``receive_reply`` gives a reply.
REPLY_COLUMNS = (
    *("patient_id", "enrollment_id", "in_reply_to_id", "channel", "received_at", "raw_text"),
    *("pain_score", "keywords", "flare_signal", "crisis", "provider_id"),
)
#: A pain report's values as the reply's columns: who, enrollment, reply, score, when.
_SCORED = ("patient_id", "enrollment_id", "id", "pain_score", "received_at")
_new = (
    insert(_replies)
    .values({_replies.c[name]: bindparam(name) for name in REPLY_COLUMNS})
    .returning(*(_replies.c[n] for n in _SCORED))
    .cte("new_reply")
)
#: PostgreSQL: a scored reply and its pain report in one statement (a CTE that inserts).
INSERT_SCORED_REPLY = (
    insert(_pain_reports)
    .from_select(
        ["patient_id", "enrollment_id", "reply_id", "score", "reported_at"],  # as _SCORED
        select(*(_new.c[n] for n in _SCORED)),
    )
    .returning(_pain_reports.c.reply_id)
)


def sender_and_seen(
    session: Session, phone_hashes: list[str], message_sid: str
) -> tuple[Patient | None, int | None]:
    row = session.execute(
        SENDER_AND_SEEN, {"phone_hashes": phone_hashes, "message_sid": message_sid}
    ).first()
    return (row[0], row[1]) if row is not None else (None, None)


@dataclass(frozen=True)
class ReplyContext:
    """What ``inbound.receive_reply`` reads before storing a text, read with its sender."""

    enrollment: Enrollment
    checksum: str
    answered_id: int | None

    @property
    def live(self) -> tuple[Enrollment, str]:
        """As ``inbound.live_enrollment`` returns it."""
        return self.enrollment, self.checksum


def sender_context(
    session: Session, phone_hashes: list[str], message_sid: str, channel: Channel, now: datetime
) -> tuple[Patient | None, int | None, ReplyContext | None]:
    """The sender, a reply already stored under ``message_sid`` and, when the sender is in a
    program, the reply's context (its enrollment locked as ``inbound.live_enrollment`` does)."""
    params = {"phone_hashes": phone_hashes, "message_sid": message_sid}
    row = session.execute(SENDER_CONTEXT, {**params, "channel": channel, "now": now}).first()
    if row is not None:
        return row[0], row[1], ReplyContext(row[2], row[3], row[4])
    return (*sender_and_seen(session, phone_hashes, message_sid), None)


def recent_scores(session: Session, patient_id: int, *, limit: int) -> list[float]:
    """The newest ``limit`` pain scores, oldest first."""
    rows = session.scalars(RECENT_SCORES, {"patient_id": patient_id, "limit": limit}).all()
    return list(reversed(rows))


def answered_and_scores(
    session: Session, patient_id: int, channel: Channel, now: datetime, *, limit: int
) -> tuple[int | None, list[float]]:
    """The newest message that reached the patient on ``channel`` (what the reply answers)
    and ``recent_scores`` (oldest first), in one round trip."""
    rows = session.execute(
        ANSWERED_AND_SCORES,
        {"patient_id": patient_id, "channel": channel, "now": now, "limit": limit},
    ).all()
    answered = rows[0][0] if rows else None
    return answered, [row[1] for row in reversed(rows) if row[1] is not None]


def insert_reply(session: Session, values: dict[str, Any]) -> int:
    """Store a reply (``REPLY_COLUMNS``) and, when it has a score, its pain report reported
    when it was received; returns the reply's id. One round trip on PostgreSQL."""
    score = values["pain_score"]
    if score is not None and dialect_of(session) == "postgresql":
        scored: int = session.execute(INSERT_SCORED_REPLY, values).scalar_one()
        return scored
    reply_id: int = session.execute(INSERT_REPLY, values).scalar_one()
    if score is not None:
        session.execute(
            INSERT_PAIN_REPORT,
            {
                "patient_id": values["patient_id"],
                "enrollment_id": values["enrollment_id"],
                "reply_id": reply_id,
                "score": score,
                "reported_at": values["received_at"],
            },
        )
    return reply_id
