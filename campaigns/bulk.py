"""Bulk enrolment: many new patients validated like ``PatientInput`` and enrolled in chunks.

Each chunk is one transaction of multi-row inserts (patients, consents, enrollments and the
``enrolled`` events ``enroll`` records), so 100k rows take seconds instead of minutes. Rows
that fail validation, or reuse an ``external_ref``, phone or email (replies are matched to
patients by them), are reported by line and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from itertools import islice
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from campaigns import pacing
from campaigns.enrollments import clock_of, rules_of
from campaigns.enums import Channel
from campaigns.models import Consent, Enrollment, Event, Patient, ProgramVersion
from campaigns.patients import PatientInput
from campaigns.sendwindow import SendWindow

CHUNK = 5000
_STATE_FIELDS = [f.name for f in fields(pacing.PacingState) if f.name != "state"]


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


@dataclass
class BulkResult:
    created: int = 0
    errors: list[RowError] = field(default_factory=list)


def validate(line: int, row: Mapping[str, Any]) -> PatientInput | RowError:
    """Blank cells mean "not given", so defaults apply as they do for a form."""
    data = {k: v for k, v in row.items() if v not in (None, "")}
    try:
        return PatientInput.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
        )
        return RowError(line, problems)


def _chunks(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[tuple[int, Any]]]:
    numbered = enumerate(rows, start=2)  # line 1 is the CSV header
    while chunk := list(islice(numbered, size)):
        yield chunk


def bulk_enroll(
    sessions: Any,
    rows: Iterable[Mapping[str, Any]],
    version: ProgramVersion,
    window: SendWindow,
    *,
    by: str,
    now: datetime,
    chunk_size: int = CHUNK,
) -> BulkResult:
    """``sessions`` is a context-manager factory (``Runtime.session``): one per chunk."""
    result = BulkResult()
    rules = rules_of(version)
    seen: set[tuple[str, str]] = set()
    for chunk in _chunks(rows, chunk_size):
        valid: list[tuple[int, PatientInput]] = []
        for line, row in chunk:
            checked = validate(line, row)
            if isinstance(checked, RowError):
                result.errors.append(checked)
                continue
            keys = identities(checked)
            if repeated := [kind for kind, value in keys if (kind, value) in seen]:
                result.errors.append(RowError(line, f"{repeated[0]} repeats an earlier row"))
                continue
            seen.update(keys)
            valid.append((line, checked))
        with sessions() as session:
            result.created += _insert_chunk(session, valid, version, rules, window, result, by, now)
    return result


def _insert_chunk(
    session: Session,
    valid: list[tuple[int, PatientInput]],
    version: ProgramVersion,
    rules: pacing.PacingRules,
    window: SendWindow,
    result: BulkResult,
    by: str,
    now: datetime,
) -> int:
    taken = _taken(session, [key for _, data in valid for key in identities(data)])
    keep = []
    for line, data in valid:
        if clash := [kind for kind, value in identities(data) if (kind, value) in taken]:
            result.errors.append(RowError(line, f"{clash[0]} already belongs to a patient"))
        else:
            keep.append(data)
    if not keep:
        return 0
    ids = session.scalars(
        insert(Patient).returning(Patient.id, sort_by_parameter_order=True),
        [_patient_values(d, now) for d in keep],
    ).all()
    consents = [
        {"patient_id": pid, "channel": ch, "granted": True, "method": "enrolment",
         "recorded_by": by, "at": now}
        for pid, d in zip(ids, keep, strict=True)
        for ch, granted in ((Channel.SMS, d.consent_sms), (Channel.EMAIL, d.consent_email))
        if granted
    ]  # fmt: skip
    if consents:
        session.execute(insert(Consent), consents)
    states = [pacing.start(rules, clock_of(_clock_patient(d), window), now=now) for d in keep]
    enrollment_ids = session.scalars(
        insert(Enrollment).returning(Enrollment.id, sort_by_parameter_order=True),
        [_enrollment_values(pid, version.id, s, now) for pid, s in zip(ids, states, strict=True)],
    ).all()
    session.execute(
        insert(Event),
        [
            _event_values(pid, eid, version.version, s, by, now)
            for pid, eid, s in zip(ids, enrollment_ids, states, strict=True)
        ],
    )
    return len(keep)


def identities(d: PatientInput) -> list[tuple[str, str]]:
    """What no two patients may share, as (kind, value); contacts by their lookup hash."""
    lookups = Patient.lookup_columns(d.phone, d.email)
    pairs = (
        ("external_ref", d.external_ref),
        ("phone", lookups["phone_hash"]),
        ("email", lookups["email_hash"]),
    )
    return [(kind, value) for kind, value in pairs if value]


def _taken(session: Session, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    columns = {
        "external_ref": Patient.external_ref,
        "phone": Patient.phone_hash,
        "email": Patient.email_hash,
    }
    taken: set[tuple[str, str]] = set()
    for kind, column in columns.items():
        if values := [value for k, value in keys if k == kind]:
            found = session.scalars(select(column).where(column.in_(values)))
            taken.update((kind, value) for value in found if value is not None)
    return taken


def _patient_values(d: PatientInput, now: datetime) -> dict[str, Any]:
    return {
        **Patient.lookup_columns(d.phone, d.email),
        "first_name": d.first_name,
        "last_name": d.last_name,
        "email": d.email,
        "phone_e164": d.phone,
        "timezone": d.timezone,
        "preferred_channel": d.channel,
        "send_time": d.send_time,
        "external_ref": d.external_ref,
        "created_at": now,
    }


def _clock_patient(d: PatientInput) -> Patient:
    return Patient(timezone=d.timezone, send_time=d.send_time)


def _enrollment_values(
    patient_id: int, version_id: int, state: pacing.PacingState, now: datetime
) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(state, name) for name in _STATE_FIELDS}
    values.update(
        patient_id=patient_id,
        version_id=version_id,
        state=state.state,
        enrolled_at=now,
        row_version=1,
    )
    return values


def _event_values(
    patient_id: int, enrollment_id: int, number: int, state: pacing.PacingState, by: str,
    now: datetime,
) -> dict[str, Any]:  # fmt: skip
    return {
        "at": now,
        "patient_id": patient_id,
        "enrollment_id": enrollment_id,
        "actor": by,
        "kind": "enrolled",
        "from_state": None,
        "to_state": state.state.value,
        "reason": f"enrolled in version {number}",
        "data": {"first_due": state.next_due_at.isoformat() if state.next_due_at else None},
    }
