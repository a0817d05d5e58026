"""What the database says happened to one enrollment: scores, flares, pacing changes,
messages and alerts, placed on the patient's program-day axis. Read back from storage, not
from anyone's memory, so charts show what the system actually stored and sent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.enums import AlertKind, MessagePurpose, MessageStatus, StepKind, Track
from campaigns.models import (
    Alert,
    Enrollment,
    Event,
    InboundReply,
    OutboxMessage,
    PainReport,
    Patient,
    ProgramStep,
)


@dataclass(frozen=True)
class PatientSummary:
    """One row of the summary table; also what ``run_demo`` returns for tests to check."""

    index: int
    patient_id: int
    enrollment_id: int
    name: str
    pattern: str
    timezone: str
    channel: str
    state: str
    main_sent: int
    main_total: int
    flare_sent: int
    resume_sent: int
    flares: int
    alerts: int
    replies: int
    last_score: float | None


@dataclass(frozen=True)
class Mark:
    """Something at a point in program time: ``x`` is the fractional local program day."""

    x: float
    kind: str
    label: str
    value: float = 0.0


@dataclass(frozen=True)
class Timeline:
    summary: PatientSummary
    scores: tuple[Mark, ...]
    flares: tuple[tuple[float, float | None], ...]
    changes: tuple[Mark, ...]
    messages: tuple[Mark, ...]
    #: (program day, local time, what, detail), oldest first.
    log: tuple[tuple[int, datetime, str, str], ...]


# --- reading the database ------------------------------------------------------------------

CHANGE_KINDS = (
    "flare-start",
    "flare-end",
    "pause",
    "resume",
    "slower",
    "opt-out",
    "opt-in",
    "complete",
    "long-flare-alert",
)
#: "resume" is both a pacing event (un-pause) and a message kind (welcome back): tell apart.
RENAMED = {"resume": "resumed"}


@dataclass(frozen=True)
class _Clock:
    tz: ZoneInfo
    day1: date

    def x(self, at: datetime) -> float:
        """Program day as a number: day 1 spans [1, 2) in the patient's own wall-clock time."""
        local = at.astimezone(self.tz).replace(tzinfo=None)
        midnight = datetime.combine(self.day1, datetime.min.time())
        return (local - midnight).total_seconds() / 86400 + 1

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self.tz)


@dataclass(frozen=True)
class _Facts:
    """The rows one patient left behind, oldest first."""

    patient: Patient
    enrollment: Enrollment
    steps: dict[int, ProgramStep]
    sent: Sequence[OutboxMessage]
    replies: Sequence[InboundReply]
    scores: Sequence[tuple[float, datetime, str]]
    events: Sequence[Event]
    alerts: Sequence[Alert]


def _read(session: Session, enrollment_id: int) -> _Facts:
    enrollment = session.get_one(Enrollment, enrollment_id)
    pid = enrollment.patient_id
    return _Facts(
        patient=session.get_one(Patient, pid),
        enrollment=enrollment,
        steps={s.id: s for s in enrollment.version.steps},
        sent=session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.patient_id == pid, OutboxMessage.status == MessageStatus.SENT)
            .order_by(OutboxMessage.sent_at, OutboxMessage.id)
        ).all(),
        replies=session.scalars(
            select(InboundReply)
            .where(InboundReply.patient_id == pid)
            .order_by(InboundReply.received_at, InboundReply.id)
        ).all(),
        scores=session.execute(
            select(PainReport.score, PainReport.reported_at, InboundReply.raw_text)
            .join(InboundReply, PainReport.reply_id == InboundReply.id)
            .where(PainReport.patient_id == pid)
            .order_by(PainReport.reported_at)
        )
        .tuples()
        .all(),
        events=session.scalars(
            select(Event).where(Event.enrollment_id == enrollment.id).order_by(Event.id)
        ).all(),
        alerts=session.scalars(
            select(Alert).where(Alert.patient_id == pid).order_by(Alert.created_at)
        ).all(),
    )


def collect(session: Session, index: int, pattern: str, enrollment_id: int, day1: date) -> Timeline:
    """Everything stored about one enrolled patient, placed on their program-day axis."""
    facts = _read(session, enrollment_id)
    clock = _Clock(ZoneInfo(facts.patient.timezone), day1)
    messages = [_message_mark(clock, row, facts.steps) for row in facts.sent]
    changes = [
        Mark(clock.x(e.at), RENAMED.get(e.kind, e.kind), e.reason)
        for e in facts.events
        if e.kind in CHANGE_KINDS
    ]
    # The long-flare alert is already marked by its pacing event; other alerts are not.
    changes += [
        Mark(clock.x(a.created_at), "alert", f"staff alert: {a.summary}")
        for a in facts.alerts
        if a.kind != AlertKind.LONG_FLARE
    ]
    return Timeline(
        summary=_summary(index, pattern, facts, [m.kind for m in messages]),
        scores=tuple(
            Mark(clock.x(at), "score", f"{score:g}/10: “{text}”", score)
            for score, at, text in facts.scores
        ),
        flares=_flare_spans(changes),
        changes=tuple(changes),
        messages=tuple(messages),
        log=tuple(
            (int(clock.x(at)), clock.local(at), kind, text) for at, kind, text in _log(facts)
        ),
    )


def _summary(index: int, pattern: str, facts: _Facts, kinds: list[str]) -> PatientSummary:
    patient, enrollment = facts.patient, facts.enrollment
    return PatientSummary(
        index=index,
        patient_id=patient.id,
        enrollment_id=enrollment.id,
        name=patient.display_name,
        pattern=pattern,
        timezone=patient.timezone,
        channel=patient.preferred_channel.value,
        state=enrollment.state.value,
        main_sent=kinds.count("main"),
        main_total=sum(1 for s in facts.steps.values() if s.track == Track.MAIN),
        flare_sent=kinds.count("flare"),
        resume_sent=kinds.count("resume"),
        flares=sum(1 for e in facts.events if e.kind == "flare-start"),
        alerts=len(facts.alerts),
        replies=len(facts.replies),
        last_score=facts.scores[-1][0] if facts.scores else None,
    )


def _log(facts: _Facts) -> list[tuple[datetime, str, str]]:
    """Pacing decisions, messages, replies and alerts interleaved in time."""
    log = [(e.at, e.kind, e.reason) for e in facts.events if not e.kind.startswith("send-")]
    log += [
        (r.sent_at, f"sent {r.channel.value}", _message_title(r, facts.steps))
        for r in facts.sent
        if r.sent_at is not None
    ]
    log += [(r.received_at, "reply", r.raw_text) for r in facts.replies]
    log += [(a.created_at, f"alert ({a.kind.value})", a.summary) for a in facts.alerts]
    return sorted(log, key=_first)


def _first(item: tuple[datetime, str, str]) -> datetime:
    return item[0]


def _message_title(row: OutboxMessage, steps: dict[int, ProgramStep]) -> str:
    step = steps.get(row.step_id) if row.step_id is not None else None
    if step is not None:
        return step.title
    return f"{row.purpose.value}: {row.subject or row.body_text}"


def _message_mark(clock: _Clock, row: OutboxMessage, steps: dict[int, ProgramStep]) -> Mark:
    step = steps.get(row.step_id) if row.step_id is not None else None
    if row.purpose != MessagePurpose.PROGRAM or step is None:
        kind = "auto"
    elif step.kind == StepKind.RESUME:
        kind = "resume"
    else:
        kind = step.track.value
    assert row.sent_at is not None
    return Mark(clock.x(row.sent_at), kind, _message_title(row, steps))


def _flare_spans(changes: Iterable[Mark]) -> tuple[tuple[float, float | None], ...]:
    """Pair each flare start with the next flare end; an unfinished flare stays open."""
    spans: list[tuple[float, float | None]] = []
    start: float | None = None
    for mark in sorted(changes, key=lambda m: m.x):
        if mark.kind == "flare-start" and start is None:
            start = mark.x
        elif mark.kind == "flare-end" and start is not None:
            spans.append((start, mark.x))
            start = None
    if start is not None:
        spans.append((start, None))
    return tuple(spans)
