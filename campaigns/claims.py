"""The tick's claim of due enrollments as plain column values, not ORM objects.

Loading a batch as ``Enrollment`` + ``Patient`` objects cost more than pacing it: identity
map bookkeeping per row, and both encrypted contact columns decrypted for every patient
although the tick never reads them. The tick only needs the pacing state, the row version
(for the version-checked UPDATE) and the patient's name, channel and clock, so it selects
those columns. The claim itself is unchanged: ordered by ``next_due_at`` and locked with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several workers share the work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date, datetime, time
from functools import cache
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Integer, Select, bindparam, select, text
from sqlalchemy.orm import Session, selectinload

from campaigns import pacing
from campaigns.db import dialect_of, execute_plain
from campaigns.enums import Channel, EnrollmentState
from campaigns.models import Enrollment, Patient, Program, ProgramVersion
from campaigns.prefetch import among_param, execute_among

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
#: By position: a ``Row``'s ``row.name`` costs a caught ``AttributeError`` (``outbox._Claimed``).
_VERSION_AT = _NAMES.index("version_id")


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
    if dialect_of(session) != "postgresql":
        yield
        return
    session.execute(text("SET LOCAL enable_sort = off"))
    yield  # no finally: after an error the transaction is rolled back, and the setting with it
    session.execute(text("RESET enable_sort"))


def claim_due(session: Session, *, now: datetime, limit: int) -> list[DueEnrollment]:
    """The earliest due enrollments (locked, skipping rows another worker holds)."""
    postgresql = dialect_of(session) == "postgresql"
    with in_index_order(session):
        params = {"now": now, "limit": limit}
        rows = execute_plain(session, _due_statement(postgresql), params).all()
    versions = load_versions(session, {row[_VERSION_AT] for row in rows})
    split = len(_NAMES)
    # By position: ``DueEnrollment``'s fields are ``_NAMES`` in order, then the patient and
    # the version (tests/unit/test_claim_fields.py); keywords built a dict per row. Typed
    # loosely because mypy cannot count a row slice's items.
    due: Callable[..., DueEnrollment] = DueEnrollment
    return [due(*row[:split], DuePatient(*row[split:]), versions[row[_VERSION_AT]]) for row in rows]


#: What identifies a loaded version: id, checksum (a database made again from scratch reuses
#: ids, not content) and its program's name, the one part a later publish changes.
_VersionKey = tuple[int, str, str]
#: Versions loaded with their steps and program, per engine. A published version never
#: changes, and loading it with its ~50 steps for every batch was ~5% of B3's tick.
_VERSIONS: WeakKeyDictionary[Engine, dict[_VersionKey, ProgramVersion]] = WeakKeyDictionary()
#: Versions kept per engine: programs times the versions patients are still on.
_VERSIONS_LIMIT = 256


@cache
def _version_keys(dialect: str) -> Select[tuple[int, str, str]]:
    return (
        select(ProgramVersion.id, ProgramVersion.checksum, Program.name)
        .join(Program, Program.id == ProgramVersion.program_id)
        .where(among_param(dialect, ProgramVersion.id, "ids"))
    )


def load_versions(session: Session, version_ids: Iterable[int]) -> dict[int, ProgramVersion]:
    """The batch's versions with their steps and program: one small read of their keys, and
    the versions themselves only where this process has not loaded them yet.

    The objects are shared between sessions, detached from the one that loaded them (whose
    rollback would otherwise expire them), so callers only read them."""
    ids = list(version_ids)
    if not ids:
        return {}
    keys = execute_among(session, _version_keys, ids)
    engine = session.get_bind().engine
    cached = _VERSIONS.setdefault(engine, {})
    found = {key.id: cached.get(tuple(key)) for key in keys}
    missing = [vid for vid, version in found.items() if version is None]
    if missing:
        loaded = session.scalars(
            select(ProgramVersion)
            .where(ProgramVersion.id.in_(missing))
            .options(selectinload(ProgramVersion.steps), selectinload(ProgramVersion.program))
        )
        for version in loaded.all():
            _detach(session, version)
            found[version.id] = version
            for stale in [key for key in cached if key[0] == version.id]:  # renamed since
                del cached[stale]
            if len(cached) < _VERSIONS_LIMIT:
                cached[(version.id, version.checksum, version.program.name)] = version
    return {vid: version for vid, version in found.items() if version is not None}


def _detach(session: Session, version: ProgramVersion) -> None:
    """Take a fully loaded version, its program and steps out of ``session``."""
    for obj in (version, version.program, *version.steps):
        if obj in session:
            session.expunge(obj)
