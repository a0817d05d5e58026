"""Bulk enrolment's database half: one chunk of prepared rows, written in one transaction.

Rows clashing with stored patients (external_ref, or a phone or email hash under any lookup
key) are refused first. Ids are then reserved up front, so each of the four tables takes one
statement (PostgreSQL: ``unnest`` arrays) or one plain executemany (SQLite) with no ORM unit
of work and no per-row ``RETURNING``: the same rows ``create_patient`` + ``enroll`` store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, column, func, select, table
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.types import Text

from campaigns.batch_insert import insert_rows
from campaigns.bulk_rows import ENROLLMENT_COLUMNS, PATIENT_COLUMNS, Prepared, RowError
from campaigns.db import dialect_of
from campaigns.field_crypto import EncryptedText
from campaigns.models import Consent, Enrollment, Event, Patient
from campaigns.prefetch import among


def _stored_as_text(source: Table) -> TableClause:
    """``source`` with its encrypted columns typed as the text they hold: ``Prepared`` rows
    carry ciphertext already (encrypted in a worker process), so it must not be re-encrypted."""
    columns = [
        column(c.name, Text() if isinstance(c.type, EncryptedText) else c.type)
        for c in source.columns
    ]
    return table(source.name, *columns)


PATIENTS = _stored_as_text(Patient.__table__)  # type: ignore[arg-type]


def write_chunk(
    session: Session, rows: Sequence[Prepared], version_id: int, number: int, *, by: str,
    now: datetime,
) -> tuple[int, list[RowError]]:  # fmt: skip
    """Store the rows that clash with no stored patient; (how many, errors for the rest)."""
    taken = _taken(session, [key for row in rows for key in row.identities])
    keep: list[Prepared] = []
    errors: list[RowError] = []
    for row in rows:
        if clash := [kind for kind, value in row.identities if (kind, value) in taken]:
            errors.append(RowError(row.line, f"{clash[0]} already belongs to a patient"))
        else:
            keep.append(row)
    if keep:
        _store(session, keep, version_id, number, by=by, now=now)
    return len(keep), errors


def _store(
    session: Session, rows: Sequence[Prepared], version_id: int, number: int, *, by: str,
    now: datetime,
) -> None:  # fmt: skip
    patient_ids = _reserve_ids(session, Patient.__table__, len(rows))  # type: ignore[arg-type]
    enrollment_ids = _reserve_ids(session, Enrollment.__table__, len(rows))  # type: ignore[arg-type]
    triples = list(zip(patient_ids, enrollment_ids, rows, strict=True))
    patients = [{"id": pid, **dict(zip(PATIENT_COLUMNS, row.patient, strict=True))}
                for pid, _, row in triples]  # fmt: skip
    insert_rows(session, PATIENTS, patients)
    consents = [
        {"patient_id": pid, "channel": channel, "granted": True, "method": "enrolment",
         "recorded_by": by, "at": now}
        for pid, _, row in triples
        for channel in row.consents
    ]  # fmt: skip
    insert_rows(session, Consent.__table__, consents)  # type: ignore[arg-type]
    enrollments = [_enrollment(eid, pid, version_id, row, now) for pid, eid, row in triples]
    insert_rows(session, Enrollment.__table__, enrollments)  # type: ignore[arg-type]
    events = [_event(row, number, by, now) for row in enrollments]
    insert_rows(session, Event.__table__, events)  # type: ignore[arg-type]


def _taken(session: Session, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    columns = {
        "external_ref": Patient.external_ref,
        "phone": Patient.phone_hash,
        "email": Patient.email_hash,
    }
    taken: set[tuple[str, str]] = set()
    for kind, col in columns.items():
        if values := [value for k, value in keys if k == kind]:
            found = session.scalars(select(col).where(among(session, col, values)))
            taken.update((kind, value) for value in found if value is not None)
    return taken


def _reserve_ids(session: Session, target: Table, n: int) -> list[int]:
    """``n`` fresh primary keys for ``target``. PostgreSQL draws them from the column's
    sequence; SQLite continues from the largest id, which is safe because every write
    transaction starts with ``BEGIN IMMEDIATE`` (``campaigns.db``): no other writer can
    insert before this transaction commits."""
    if dialect_of(session) == "postgresql":
        sequence = func.pg_get_serial_sequence(target.name, "id")
        drawn = session.scalars(
            select(func.nextval(sequence)).select_from(func.generate_series(1, n))
        )
        return sorted(drawn)
    largest = session.scalar(select(func.coalesce(func.max(target.c.id), 0)))
    return list(range(int(largest or 0) + 1, int(largest or 0) + n + 1))


def _enrollment(
    enrollment_id: int, patient_id: int, version_id: int, row: Prepared, now: datetime
) -> dict[str, Any]:
    values = dict(zip(ENROLLMENT_COLUMNS, row.enrollment, strict=True))
    values.update(
        id=enrollment_id,
        patient_id=patient_id,
        version_id=version_id,
        enrolled_at=now,
        row_version=1,
    )
    return values


def _event(enrollment: dict[str, Any], number: int, by: str, now: datetime) -> dict[str, Any]:
    """What ``enroll`` records for a new enrollment."""
    first_due = enrollment["next_due_at"]
    return {
        "at": now,
        "patient_id": enrollment["patient_id"],
        "enrollment_id": enrollment["id"],
        "actor": by,
        "kind": "enrolled",
        "from_state": None,
        "to_state": enrollment["state"],
        "reason": f"enrolled in version {number}",
        "data": {"first_due": first_due.isoformat() if first_due else None},
    }
