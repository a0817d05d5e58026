"""The tick's claim of due enrollments as plain column values, not ORM objects.

Loading a batch as ``Enrollment`` + ``Patient`` objects cost more than pacing it: identity
map bookkeeping per row, and both encrypted contact columns decrypted for every patient
although the tick never reads them. The tick only needs the pacing state, the row version
(for the version-checked UPDATE) and the patient's name, channel and clock, so it selects
those columns. The claim itself is unchanged: ordered by ``next_due_at`` and locked with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers share the work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date, datetime, time
from functools import cache
from typing import Any

from sqlalchemy import Integer, Select, bindparam, select, text
from sqlalchemy.orm import Session, selectinload

from campaigns import pacing
from campaigns.enums import Channel, EnrollmentState
from campaigns.models import Enrollment, Patient, ProgramVersion

STATE_FIELDS = [f.name for f in fields(pacing.PacingState) if f.name != "state"]


@dataclass(slots=True)
class DuePatient:
    """What the tick reads of a patient: no contact details (those are read at send time)."""

    id: int
    first_name: str
    preferred_channel: Channel
    timezone: str
    send_time: time


@dataclass(slots=True)
class DueEnrollment:
    """A claimed enrollment: its pacing state, row version, patient and (shared) version."""

    id: int
    patient_id: int
    version_id: int
    state: EnrollmentState
    row_version: int
    ended_at: datetime | None
    main_position: int
    flare_position: int
    flare_sent: int
    cadence_days: int
    next_due_at: datetime | None
    last_program_send_on: date | None
    flare_started_at: datetime | None
    last_flare_signal_at: datetime | None
    settled_reports: int
    flare_alerted: bool
    resume_pending: bool
    paused_from: EnrollmentState | None
    patient: DuePatient
    version: ProgramVersion


_ENROLLMENT_COLUMNS = ["id", "patient_id", "version_id", "state", "row_version", "ended_at"]
_PATIENT_COLUMNS = ["id", "first_name", "preferred_channel", "timezone", "send_time"]
_NAMES = [*_ENROLLMENT_COLUMNS, *STATE_FIELDS]


def due_query(*, now: datetime, limit: int, locking: bool) -> Select[Any]:
    """The claim's statement with its values bound (to look at its plan)."""
    return _due_statement(locking).params(now=now, limit=limit)


@cache
def _due_statement(locking: bool) -> Select[Any]:
    """The claim, built once: its order is ``ix_enrollments_due``'s, (next_due_at, id), so a
    batch is read off the index however many rows are due (everyone at 09:00)."""
    query = (
        select(
            *(getattr(Enrollment, c) for c in _NAMES),
            *(getattr(Patient, c) for c in _PATIENT_COLUMNS),
        )
        .join(Patient, Patient.id == Enrollment.patient_id)
        .where(
            Enrollment.next_due_at.is_not(None),
            Enrollment.next_due_at <= bindparam("now", type_=Enrollment.next_due_at.type),
        )
        .order_by(Enrollment.next_due_at, Enrollment.id)
        .limit(bindparam("limit", type_=Integer()))
    )
    return query.with_for_update(skip_locked=True, of=Enrollment) if locking else query


@contextmanager
def in_index_order(session: Session) -> Iterator[None]:
    """PostgreSQL plans the statements run inside without sorting where it can avoid it.

    Statistics taken before a send time filled up (a bulk enrolment, everyone at 09:00) say
    almost nothing is due, and for "almost nothing" PostgreSQL may collect every due row and
    sort it: ~100 ms per batch at 50k due, against ~2 ms read off ``ix_enrollments_due``,
    whose order is the claim's. With sorting ruled out, the index is the plan. The same
    holds for a backlog of planned messages handed out again (``dispatching``).
    """
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    session.execute(text("SET LOCAL enable_sort = off"))
    yield  # no finally: after an error the transaction is rolled back, and the setting with it
    session.execute(text("RESET enable_sort"))


def claim_due(session: Session, *, now: datetime, limit: int) -> list[DueEnrollment]:
    """The earliest due enrollments (locked, skipping rows another worker holds)."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    with in_index_order(session):
        params = {"now": now, "limit": limit}
        rows = session.execute(_due_statement(postgresql), params).all()
    versions = load_versions(session, {row.version_id for row in rows})
    split = len(_NAMES)
    claimed = []
    for row in rows:
        values: dict[str, Any] = dict(zip(_NAMES, row[:split], strict=True))
        patient = DuePatient(*row[split:])
        claimed.append(
            DueEnrollment(**values, patient=patient, version=versions[values["version_id"]])
        )
    return claimed


def load_versions(session: Session, version_ids: Iterable[int]) -> dict[int, ProgramVersion]:
    """The batch's versions with their steps and program, once each (``SELECT .. IN``)."""
    ids = list(version_ids)
    if not ids:
        return {}
    versions = session.scalars(
        select(ProgramVersion)
        .where(ProgramVersion.id.in_(ids))
        .options(selectinload(ProgramVersion.steps), selectinload(ProgramVersion.program))
    )
    return {v.id: v for v in versions}
