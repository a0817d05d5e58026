"""Enrollments: the bridge between the pacing engine's pure state and its stored row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from functools import cache, lru_cache
from operator import attrgetter
from typing import Any, Protocol, cast
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql.dml import Update

from campaigns import pacing, sqlite_bulk
from campaigns.batch_insert import insert_rows
from campaigns.claims import STATE_FIELDS, DueEnrollment
from campaigns.enums import AlertPriority, AlertStatus, EnrollmentState, Track
from campaigns.models import Alert, Enrollment, Event, Patient, ProgramStep, ProgramVersion
from campaigns.pgbulk import unnest_binds, unnest_values
from campaigns.sendwindow import PatientClock, SendWindow


class HasClock(Protocol):
    """A patient's timing columns: an ORM ``Patient`` or a row of the tick or send path."""

    @property
    def timezone(self) -> str: ...

    @property
    def send_time(self) -> time: ...


class EnrollmentError(ValueError):
    """A request that would break an enrollment rule (e.g. enrolling twice)."""


#: A stored state's fields, and their values in one C call, for an ``Enrollment`` or a
#: claimed row alike.
_STATE_ORDER = [*STATE_FIELDS, "state"]
_STATE_OF = attrgetter(*_STATE_ORDER)


def pacing_state(enrollment: Enrollment | DueEnrollment) -> pacing.PacingState:
    return pacing.PacingState.of(dict(zip(_STATE_ORDER, _STATE_OF(enrollment), strict=True)))


def store_state(enrollment: Enrollment, state: pacing.PacingState) -> None:
    enrollment.state = state.state
    for name in STATE_FIELDS:
        setattr(enrollment, name, getattr(state, name))


def rules_of(version: ProgramVersion) -> pacing.PacingRules:
    return pacing.PacingRules.from_mapping(version.pacing_rules, cadence_days=version.cadence_days)


def shape_of(version: ProgramVersion) -> pacing.ProgramShape:
    main = sum(1 for s in version.steps if s.track == Track.MAIN)
    flare = [s for s in version.steps if s.track == Track.FLARE]
    has_resume = any(s.kind == "resume" for s in flare)
    return pacing.ProgramShape(main, len(flare) - int(has_resume), has_resume)


@dataclass(frozen=True)
class VersionFacts:
    rules: pacing.PacingRules
    shape: pacing.ProgramShape


_FACTS: dict[tuple[int, str], VersionFacts] = {}
_FACTS_LIMIT = 4096


def version_facts(version: ProgramVersion) -> VersionFacts:
    """A published version never changes, so its pacing facts are worked out once per
    process instead of loading every step per reply. Keyed by id and checksum: the checksum
    is the SHA-256 of the whole spec and files the version's rules and steps were made from
    (``LoadedProgram.checksum``), so two databases' versions with the same key have the same
    facts. (The key held the database's URL too; rendering it was ~7 µs per message.)"""
    key = (version.id, version.checksum)
    facts = _FACTS.get(key)
    if facts is None:
        facts = VersionFacts(rules_of(version), shape_of(version))
        if len(_FACTS) < _FACTS_LIMIT:
            _FACTS[key] = facts
    return facts


def facts_by_id(session: Session, version_id: int, checksum: str) -> VersionFacts:
    """``version_facts`` for a caller that selected only the version's id and checksum: a
    reply then costs no version row (its JSON rules) unless this process has not seen it."""
    facts = _FACTS.get((version_id, checksum))
    if facts is not None:
        return facts
    version = session.get(ProgramVersion, version_id)
    if version is None:
        raise LookupError(f"program version {version_id} does not exist")
    return version_facts(version)


def clock_of(patient: HasClock, window: SendWindow) -> PatientClock:
    return _clock(patient.timezone, patient.send_time, window)


@lru_cache(maxsize=1024)
def _clock(timezone: str, send_time: time, window: SendWindow) -> PatientClock:
    """One clock per (zone, send time, window): its memo then serves a whole batch. Bounded
    (1,024 clocks of at most 2 x ``MEMO_SIZE`` entries: ~5 MB at worst)."""
    return PatientClock(ZoneInfo(timezone), send_time, window)


#: (track, position) -> step, per loaded version. The tick keeps versions between batches
#: (``claims.load_versions``), and scanning the steps for every message was ~2.5% of B3.
_STEPS: WeakKeyDictionary[ProgramVersion, dict[tuple[Track, int], ProgramStep]] = (
    WeakKeyDictionary()
)


def step_for(version: ProgramVersion, track: Track, position: int) -> ProgramStep:
    steps = _STEPS.get(version)
    if steps is None or len(steps) != len(version.steps):  # a version still being built
        steps = _STEPS[version] = {(s.track, s.position): s for s in version.steps}
    step = steps.get((track, position))
    if step is None:
        raise LookupError(f"version {version.id} has no {track} step at {position}")
    return step


def enroll(
    session: Session,
    patient: Patient,
    version: ProgramVersion,
    window: SendWindow,
    *,
    by: str,
    now: datetime,
) -> Enrollment:
    """Start a patient on a version; refuses a second live enrollment in the same program."""
    live = session.scalar(
        select(Enrollment.id)
        .join(ProgramVersion)
        .where(
            Enrollment.patient_id == patient.id,
            ProgramVersion.program_id == version.program_id,
            Enrollment.state.not_in([EnrollmentState.COMPLETED, EnrollmentState.WITHDRAWN]),
        )
        .limit(1)
    )
    if live is not None:
        raise EnrollmentError(f"patient {patient.id} is already enrolled in this program")
    state = pacing.start(rules_of(version), clock_of(patient, window), now=now)
    enrollment = Enrollment(patient=patient, version=version, state=state.state, enrolled_at=now)
    store_state(enrollment, state)
    session.add(enrollment)
    session.flush()
    record(
        session,
        enrollment,
        [
            pacing.PacingEvent(
                "enrolled",
                f"enrolled in version {version.version}",
                None,
                state.state,
                {"first_due": state.next_due_at.isoformat() if state.next_due_at else None},
            )
        ],
        actor=by,
        now=now,
    )
    return enrollment


def record(
    session: Session,
    enrollment: Enrollment,
    events: Iterable[pacing.PacingEvent],
    *,
    actor: str,
    now: datetime,
) -> None:
    """Append events; the log is never updated, only added to."""
    for ev in events:
        session.add(
            Event(
                at=now,
                patient_id=enrollment.patient_id,
                enrollment_id=enrollment.id,
                actor=actor,
                kind=ev.kind,
                from_state=ev.from_state.value if ev.from_state else None,
                to_state=ev.to_state.value if ev.to_state else None,
                reason=ev.reason[:500],
                data=dict(ev.data),
            )
        )


def raise_alerts(
    session: Session,
    enrollment: Enrollment | DueEnrollment,
    requests: Iterable[pacing.AlertRequest],
    *,
    now: datetime,
    reply_id: int | None = None,
) -> list[Alert]:
    alerts = [
        Alert(
            patient_id=enrollment.patient_id,
            enrollment_id=enrollment.id,
            reply_id=reply_id,
            kind=req.kind,
            priority=AlertPriority.NORMAL,
            status=AlertStatus.OPEN,
            summary=req.summary[:300],
            created_at=now,
        )
        for req in requests
    ]
    session.add_all(alerts)
    return alerts


def apply_outcome(
    session: Session,
    enrollment: Enrollment,
    outcome: pacing.Outcome,
    *,
    actor: str,
    now: datetime,
) -> None:
    if outcome.state != pacing_state(enrollment):  # else nothing for the ORM to check at flush
        if outcome.state.state.is_final and not enrollment.state.is_final:
            enrollment.ended_at = now
        store_state(enrollment, outcome.state)
    record(session, enrollment, outcome.events, actor=actor, now=now)
    raise_alerts(session, enrollment, outcome.alerts, now=now)


def apply_outcomes(
    session: Session,
    outcomes: Sequence[tuple[Enrollment | DueEnrollment, pacing.Outcome]],
    *,
    actor: str,
    now: datetime,
) -> None:
    """``apply_outcome`` for a claimed batch, with one UPDATE executemany for all the rows.

    The ORM issues one UPDATE per row on a versioned table; this keeps its check (the row
    version must be the one read, else ``StaleDataError`` rolls the batch back) and leaves
    the objects holding their new values, as ``apply_outcome`` does (the tick passes the
    plain rows of ``claims.claim_due``).
    """
    if not outcomes:
        return
    params: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for enrollment, outcome in outcomes:
        final = outcome.state.state.is_final and not enrollment.state.is_final
        ended_at = now if final else enrollment.ended_at
        values = (*_STATE_OF(outcome.state), ended_at, enrollment.row_version + 1)
        bound = dict(zip(_BOUND_STATE, values, strict=True))
        params.append({"b_id": enrollment.id, "b_seen": enrollment.row_version, **bound})
        if isinstance(enrollment, Enrollment):
            for key, value in zip(_STATE_COLUMNS, values, strict=True):
                set_committed_value(enrollment, key, value)
        else:  # the tick's plain rows: no ORM state to keep clean
            for key, value in zip(_STATE_COLUMNS, values, strict=True):
                setattr(enrollment, key, value)
        events += _event_rows(enrollment, outcome.events, actor=actor, now=now)
        raise_alerts(session, enrollment, outcome.alerts, now=now)
    _write_states(session, params)
    insert_rows(session, cast(Table, Event.__table__), events)  # no ids needed back


_STATE_COLUMNS = [*_STATE_ORDER, "ended_at", "row_version"]
#: Their parameter names, in the order ``apply_outcomes`` fills a row's values.
_BOUND_STATE = [f"b_{n}" for n in _STATE_COLUMNS]
#: A batch row's keys and the columns whose types they have.
_STATE_KEYS = {"b_id": "id", "b_seen": "row_version"} | {f"b_{n}": n for n in _STATE_COLUMNS}


@cache
def _states_statement(dialect: str) -> Update:
    """Built once per dialect: a batch's values are its parameters."""
    table = cast(Table, Enrollment.__table__)
    if dialect == "postgresql":
        rows = unnest_binds(table, _STATE_KEYS)
        return (
            update(table)
            .where(table.c.id == rows.c.b_id, table.c.row_version == rows.c.b_seen)
            .values({name: rows.c[f"b_{name}"] for name in _STATE_COLUMNS})
        )
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.row_version == bindparam("b_seen"))
        .values({name: bindparam(f"b_{name}") for name in _STATE_COLUMNS})
    )


def _event_rows(
    enrollment: Enrollment | DueEnrollment,
    events: Iterable[pacing.PacingEvent],
    *,
    actor: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows ``record`` would add, as plain values."""
    return [
        {
            "at": now,
            "patient_id": enrollment.patient_id,
            "enrollment_id": enrollment.id,
            "actor": actor,
            "kind": ev.kind,
            "from_state": ev.from_state.value if ev.from_state else None,
            "to_state": ev.to_state.value if ev.to_state else None,
            "reason": ev.reason[:500],
            "data": dict(ev.data),
        }
        for ev in events
    ]


def _write_states(session: Session, params: list[dict[str, Any]]) -> None:
    """The version-checked UPDATE of a batch: an executemany, or on PostgreSQL one
    ``UPDATE .. FROM unnest(..)`` (exact rowcount, so the version check is the same)."""
    dialect = session.get_bind().dialect
    statement = _states_statement(dialect.name)
    if dialect.name == "postgresql":
        values = unnest_values(params, _STATE_KEYS)
        result = session.connection().execute(statement, values)
    else:
        result = sqlite_bulk.executemany(session.connection(), statement, params)
    exact = dialect.name == "postgresql" or dialect.supports_sane_multi_rowcount
    if exact and result.rowcount != len(params):
        raise StaleDataError(
            f"enrollments changed under the tick: {result.rowcount} of {len(params)} updated"
        )
