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

from campaigns import field_crypto, pacing
from campaigns.enrollments import clock_of, rules_of
from campaigns.enums import Channel
from campaigns.models import Consent, Enrollment, Event, Patient, ProgramVersion
from campaigns.patients import PatientInput, field_of, missing_consent
from campaigns.sendwindow import SendWindow

CHUNK = 5000
_STATE_FIELDS = [f.name for f in fields(pacing.PacingState) if f.name != "state"]


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


@dataclass(frozen=True)
class Checked:
    """A valid row with its lookup columns, computed once (HMACs are not free at 100k rows)."""

    line: int
    data: PatientInput
    lookups: dict[str, str | None]

    @classmethod
    def of(cls, line: int, data: PatientInput) -> Checked:
        return cls(line, data, Patient.lookup_columns(data.phone, data.email))

    def identities(self) -> list[tuple[str, str]]:
        """What no two patients may share, as (kind, value); contacts by their lookup hash,
        and during a lookup-key rotation by their hash under the older keys too."""
        keys = field_crypto.active()
        pairs = [
            ("external_ref", self.data.external_ref),
            ("phone", self.lookups["phone_hash"]),
            ("email", self.lookups["email_hash"]),
        ]
        for kind, value in (("phone", self.data.phone), ("email", self.data.email)):
            pairs += [(kind, h) for h in keys.retired_hashes(kind, value)] if value else []
        return [(kind, value) for kind, value in pairs if value]


@dataclass
class BulkResult:
    created: int = 0
    errors: list[RowError] = field(default_factory=list)


def validate(line: int, row: Mapping[str, Any]) -> PatientInput | RowError:
    """Blank cells mean "not given", so defaults apply as they do for a form."""
    data = {k: v for k, v in row.items() if v not in (None, "")}
    try:
        checked = PatientInput.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            message = str(e["msg"]).removeprefix("Value error, ")
            field = field_of(tuple(e["loc"]), message)
            problems.append(message if message.startswith(field) else f"{field}: {message}")
        return RowError(line, "; ".join(problems))
    if missing := missing_consent(checked):
        return RowError(line, f"{missing[0]}: {missing[1]}")
    return checked


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
        valid: list[Checked] = []
        for line, row in chunk:
            data = validate(line, row)
            if isinstance(data, RowError):
                result.errors.append(data)
                continue
            checked = Checked.of(line, data)
            keys = checked.identities()
            if repeated := [kind for kind, value in keys if (kind, value) in seen]:
                result.errors.append(RowError(line, f"{repeated[0]} repeats an earlier row"))
                continue
            seen.update(keys)
            valid.append(checked)
        with sessions() as session:
            result.created += _insert_chunk(session, valid, version, rules, window, result, by, now)
    return result


def _insert_chunk(
    session: Session,
    valid: list[Checked],
    version: ProgramVersion,
    rules: pacing.PacingRules,
    window: SendWindow,
    result: BulkResult,
    by: str,
    now: datetime,
) -> int:
    taken = _taken(session, [key for row in valid for key in row.identities()])
    keep = []
    for row in valid:
        if clash := [kind for kind, value in row.identities() if (kind, value) in taken]:
            result.errors.append(RowError(row.line, f"{clash[0]} already belongs to a patient"))
        else:
            keep.append(row)
    if not keep:
        return 0
    ids = session.scalars(
        insert(Patient).returning(Patient.id, sort_by_parameter_order=True),
        [_patient_values(row, now) for row in keep],
    ).all()
    consents = [
        {"patient_id": pid, "channel": ch, "granted": True, "method": "enrolment",
         "recorded_by": by, "at": now}
        for pid, row in zip(ids, keep, strict=True)
        for ch, granted in ((Channel.SMS, row.data.consent_sms),
                            (Channel.EMAIL, row.data.consent_email))
        if granted
    ]  # fmt: skip
    if consents:
        session.execute(insert(Consent), consents)
    states = [pacing.start(rules, clock_of(_clock_patient(r.data), window), now=now) for r in keep]
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


def _patient_values(row: Checked, now: datetime) -> dict[str, Any]:
    d = row.data
    return {
        **row.lookups,
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
