"""What staff see about patients: the patient list with its filters, a patient's pacing, and
their timeline of messages and replies. Read-only; changes go through ``campaigns.staff``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, exists, func, or_, select
from sqlalchemy.orm import Session

from campaigns.enrollments import shape_of
from campaigns.enums import AlertStatus, EnrollmentState
from campaigns.models import (
    OUTBOX_UNSETTLED,
    Alert,
    Enrollment,
    InboundReply,
    OutboxMessage,
    Patient,
    Program,
    ProgramStep,
    ProgramVersion,
    outbox_status_in,
)


@dataclass(frozen=True)
class PacingView:
    state: str
    step: int
    steps: int
    cadence_days: int
    next_due_local: datetime | None
    program: str
    version: int


def pacing_view(enrollment: Enrollment, patient: Patient) -> PacingView:
    due = enrollment.next_due_at
    return PacingView(
        state=enrollment.state.value,
        step=enrollment.main_position,
        steps=shape_of(enrollment.version).main_steps,
        cadence_days=enrollment.cadence_days,
        next_due_local=due.astimezone(ZoneInfo(patient.timezone)) if due else None,
        program=enrollment.version.program.name,
        version=enrollment.version.version,
    )


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    direction: str  # "sent" or "received"
    channel: str
    text: str
    status: str


def timeline(session: Session, patient: Patient, limit: int = 200) -> list[TimelineEntry]:
    """Messages (with delivery status) and replies, newest first, in the patient's time."""
    tz = ZoneInfo(patient.timezone)
    steps = dict(session.execute(select(ProgramStep.id, ProgramStep.title)).tuples().all())
    out = [
        TimelineEntry(
            at=(m.sent_at or m.planned_at).astimezone(tz),
            direction="sent",
            channel=m.channel.value,
            text=steps.get(m.step_id or 0) or m.subject or m.body_text[:120],
            status=m.status.value,
        )
        for m in session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.patient_id == patient.id)
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    ]
    out += [
        TimelineEntry(r.received_at.astimezone(tz), "received", r.channel.value, r.raw_text, "")
        for r in session.scalars(
            select(InboundReply)
            .where(InboundReply.patient_id == patient.id)
            .order_by(InboundReply.id.desc())
            .limit(limit)
        )
    ]
    return sorted(out, key=lambda e: e.at, reverse=True)[:limit]


@dataclass(frozen=True)
class PatientFilters:
    q: str = ""
    program: str = ""
    state: str = ""
    in_flare: bool = False
    needs_attention: bool = False
    limit: int = 200


@dataclass(frozen=True)
class PatientRow:
    id: int
    name: str
    external_ref: str | None
    phone_last4: str
    channel: str
    program: str | None
    state: str | None
    needs_attention: bool


def _attention() -> Any:
    open_alert = exists().where(Alert.patient_id == Patient.id, Alert.status == AlertStatus.OPEN)
    bad_message = exists().where(
        OutboxMessage.patient_id == Patient.id,
        outbox_status_in(OUTBOX_UNSETTLED),
    )
    return or_(open_alert, bad_message)


def _patient_query(filters: PatientFilters) -> Select[Any]:
    latest = (
        select(Enrollment.patient_id, func.max(Enrollment.id).label("eid"))
        .group_by(Enrollment.patient_id)
        .subquery()
    )
    attention = _attention().label("attention")
    query = (
        select(Patient, Enrollment.state, Program.name, attention)
        .outerjoin(latest, latest.c.patient_id == Patient.id)
        .outerjoin(Enrollment, Enrollment.id == latest.c.eid)
        .outerjoin(ProgramVersion, ProgramVersion.id == Enrollment.version_id)
        .outerjoin(Program, Program.id == ProgramVersion.program_id)
    )
    q = filters.q.strip().lower()
    if q:
        name = func.lower(Patient.first_name + " " + Patient.last_name)
        terms = [name.contains(q, autoescape=True), func.lower(Patient.external_ref) == q]
        if q.isdigit() and len(q) == 4:
            terms.append(Patient.phone_last4 == q)
        query = query.where(or_(*terms))
    if filters.program:
        query = query.where(Program.slug == filters.program)
    if filters.state:
        query = query.where(Enrollment.state == filters.state)
    if filters.in_flare:
        query = query.where(
            or_(
                Enrollment.state == EnrollmentState.FLARE,
                Enrollment.paused_from == EnrollmentState.FLARE,
            )
        )
    if filters.needs_attention:
        query = query.where(_attention())
    return query.order_by(Patient.last_name, Patient.first_name, Patient.id).limit(filters.limit)


def find_patients(session: Session, filters: PatientFilters) -> list[PatientRow]:
    return [
        PatientRow(
            id=p.id,
            name=p.display_name,
            external_ref=p.external_ref,
            phone_last4=p.phone_last4 or "",
            channel=p.preferred_channel.value,
            program=program,
            state=state.value if state else None,
            needs_attention=bool(attention),
        )
        for p, state, program, attention in session.execute(_patient_query(filters)).tuples()
    ]
