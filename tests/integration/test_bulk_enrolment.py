"""The bulk path stores exactly what enrolling the same rows one by one stores, on both
backends, whether rows are prepared in this process or in worker processes and however
PostgreSQL's batches go in."""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, create_engine, delete, select
from sqlalchemy.orm import Session

from campaigns import batch_insert, bulk, bulk_write, field_crypto
from campaigns.bulk import BulkResult, bulk_enroll
from campaigns.bulk_rows import validate
from campaigns.enrollments import enroll
from campaigns.field_crypto import FieldKeys
from campaigns.models import Enrollment, Event, Patient, ProgramVersion
from campaigns.patients import PatientInput, create_patient
from campaigns.runtime import Runtime
from tests.factories import load_program, make_patient

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
HEADER = "first_name,last_name,email,phone,timezone,channel,send_time,consent_sms,consent_email"
CSV = f"""{HEADER},external_ref
Ana,Diaz,ana@example.org,(650) 253-0001,America/Chicago,sms,09:30,yes,no,r-ana
Ben,,,+1 650 253 0002,America/New_York,sms,,true,,r-ben
Cy,Lee,CY@Example.ORG,,Europe/Berlin,email,19:45,no,yes,
Di,Ng,di@example.org,+16502530004,America/Los_Angeles,email,08:00,1,1,r-di
Ed,Ruiz,ed@example.org,+16502530005,Asia/Tokyo,sms,20:59,y,n,r-ed
Flo,,,650.253.0006,America/Denver,sms,12:00,yes,no,
"""
PATIENT_FIELDS = ("first_name", "last_name", "email", "phone_e164", "email_hash", "phone_hash",
                  "phone_last4", "timezone", "preferred_channel", "send_time", "external_ref",
                  "created_at")  # fmt: skip
_LINKS = {"id", "patient_id", "enrollment_id"}


def _rows(text: str = CSV) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _version(rt: Runtime) -> ProgramVersion:
    version_id = load_program(rt)
    with rt.session() as session:
        version = session.get_one(ProgramVersion, version_id)
        _ = version.steps, version.program
        session.expunge_all()
    return version


def _one_by_one(rt: Runtime, version: ProgramVersion) -> None:
    for line, row in enumerate(_rows(), start=2):
        data = validate(line, row)
        assert isinstance(data, PatientInput), data
        with rt.session() as session:
            patient = create_patient(session, data, by="staff", now=NOW)
            enroll(session, patient, session.merge(version, load=False), rt.window,
                   by="staff", now=NOW)  # fmt: skip


def _columns(row: Any, skip: set[str]) -> dict[str, Any]:
    return {c.name: getattr(row, c.key) for c in row.__mapper__.columns if c.name not in skip}


def _stored(rt: Runtime) -> dict[str, dict[str, Any]]:
    """Every stored row by patient, contacts decrypted, ids and links left out."""
    out: dict[str, dict[str, Any]] = {}
    with rt.session() as session:
        for patient in session.scalars(select(Patient)):
            enrollments = session.scalars(
                select(Enrollment).where(Enrollment.patient_id == patient.id)
            ).all()
            events = session.scalars(select(Event).where(Event.patient_id == patient.id)).all()
            assert [e.enrollment_id for e in events] == [e.id for e in enrollments]
            out[patient.first_name] = {
                "patient": {name: getattr(patient, name) for name in PATIENT_FIELDS},
                "consents": [_columns(c, _LINKS) for c in patient.consents],
                "enrollments": [_columns(e, _LINKS) for e in enrollments],
                "events": [_columns(e, _LINKS) for e in events],
            }
    return out


def _forget_everyone(rt: Runtime) -> None:
    with rt.session() as session:
        session.execute(delete(Event))
        session.execute(delete(Enrollment))
        session.execute(delete(Patient))  # consents go with them


@pytest.mark.parametrize("copy_from", [1, 10**9], ids=["copy", "insert"])
@pytest.mark.parametrize("workers", [0, 2])
def test_bulk_path_stores_what_one_by_one_enrolment_stores(
    rt: Runtime, workers: int, copy_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL with ``COPY`` and with ``INSERT .. unnest`` (a batch's size picks one)."""
    monkeypatch.setattr(batch_insert, "COPY_FROM", copy_from)
    version = _version(rt)
    _one_by_one(rt, version)
    expected = _stored(rt)
    _forget_everyone(rt)
    result = bulk_enroll(rt.session, _rows(), version, rt.window, by="staff", now=NOW,
                         chunk_size=2, workers=workers)  # fmt: skip
    assert (result.created, result.errors) == (6, [])
    stored = _stored(rt)
    assert sorted(stored) == sorted(expected) == ["Ana", "Ben", "Cy", "Di", "Ed", "Flo"]
    for name, rows in expected.items():
        for part, values in rows.items():
            assert stored[name][part] == values, (name, part)


BAD = """first_name,email,phone,timezone,channel,consent_sms,consent_email,external_ref
Ann,,not a phone,America/Chicago,sms,yes,no,a1
Bo,,+16502541002,Mars/Olympus,sms,yes,no,a2
Cat,cat@example.org,+16502541003,America/Chicago,email,yes,no,a3
Dee,,+16502541004,America/Chicago,sms,yes,no,a4
Eve,,(650) 254-1004,America/Chicago,sms,yes,no,a5
Fay,fay@example.org,+16502541006,America/Chicago,sms,yes,no,a4
Gus,,+16502541007,America/Chicago,sms,yes,no,
Hal,{taken_email},+16502541008,America/Chicago,sms,yes,no,
Ivy,,,America/Chicago,sms,yes,no,
"""


def _bulk(rt: Runtime, text: str, *, workers: int, chunk_size: int) -> BulkResult:
    return bulk_enroll(rt.session, _rows(text), _version(rt), rt.window, by="test", now=NOW,
                       chunk_size=chunk_size, workers=workers)  # fmt: skip


def _taken_email(rt: Runtime) -> str:
    with rt.session() as session:
        email = session.get_one(Patient, make_patient(rt, now=NOW)).email
    assert email
    return email


@pytest.mark.parametrize(("workers", "chunk_size"), [(0, 100), (2, 3)])
def test_bad_rows_are_named_by_line_and_field_and_nothing_of_them_is_stored(
    rt: Runtime, workers: int, chunk_size: int
) -> None:
    text = BAD.format(taken_email=_taken_email(rt).upper())
    first = _bulk(rt, text, workers=workers, chunk_size=chunk_size)
    assert first.created == 2  # Dee and Gus
    problems = {e.line: e.message for e in first.errors}
    assert problems.pop(2).startswith("phone 'not a phone' is not a phone number")
    assert problems.pop(3).startswith("timezone: 'Mars/Olympus' is not an IANA time zone")
    assert problems == {
        4: "consent_email: the patient must consent to email messages before enrolment",
        6: "phone repeats an earlier row",
        7: "external_ref repeats an earlier row",
        9: "email already belongs to a patient",
        10: "phone is required when the channel is sms",
    }
    with rt.session() as session:
        names = set(session.scalars(select(Patient.first_name)))
        assert session.scalars(select(Event.kind)).all() == ["enrolled"] * 2
    assert names == {"Sam", "Dee", "Gus"}
    again = {
        e.line: e.message for e in _bulk(rt, text, workers=workers, chunk_size=chunk_size).errors
    }
    assert {line: again.pop(line) for line in (5, 8)} == {
        5: "external_ref already belongs to a patient",
        8: "phone already belongs to a patient",
    }
    assert {line: again[line] for line in problems} == problems


def test_workers_see_the_lookup_keys_being_retired(rt: Runtime) -> None:
    taken = _taken_email(rt)
    data = rt.settings.data_keys.get_secret_value() if rt.settings.data_keys else ""
    old_lookup = rt.settings.lookup_key.get_secret_value() if rt.settings.lookup_key else ""
    try:
        field_crypto.install(FieldKeys.parse(data, f"{'n' * 40},{old_lookup}"))
        text = BAD.format(taken_email=taken).splitlines()
        result = _bulk(rt, "\n".join([text[0], text[4], text[8]]), workers=2, chunk_size=1)
    finally:
        field_crypto.install(FieldKeys.from_settings(rt.settings))
    assert result.created == 1
    assert [(e.line, e.message) for e in result.errors] == [
        (3, "email already belongs to a patient")
    ]


def test_prepare_workers_start_below_the_writers_priority_with_its_keys(rt: Runtime) -> None:
    data = rt.settings.data_keys.get_secret_value() if rt.settings.data_keys else ""
    given = FieldKeys.parse(data, "w" * 40)  # not the keys this process has installed
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(1, mp_context=context, initializer=bulk._start_worker,
                             initargs=(given,)) as pool:  # fmt: skip
        niceness = pool.submit(os.nice, 0).result()
        hashed = pool.submit(field_crypto.phone_hash, "+16502530001").result()
    assert niceness == os.nice(0) + bulk.WORKER_NICENESS
    assert hashed == given.lookup_hash("phone", "+16502530001")
    assert hashed != field_crypto.phone_hash("+16502530001")


def test_ids_are_drawn_from_the_sequence_which_is_looked_up_once(pg_url: str) -> None:
    """Looked up per value, the sequence cost ~12x the drawing itself (``_draw_ids``)."""
    engine = create_engine(pg_url)
    table = cast(Table, Patient.__table__)
    with Session(engine) as session, session.begin():
        first = bulk_write._reserve_ids(session, table, 5)
        second = bulk_write._reserve_ids(session, table, 3)
        draw = bulk_write._draw_ids(table).compile(dialect=engine.dialect)
        explain = f"EXPLAIN (VERBOSE) {draw.string}"
        plan = session.connection().exec_driver_sql(explain, draw.params | {"n": 4}).scalars()
        plan = plan.all()
    engine.dispose()
    assert len(first) == 5 and len(second) == 3 and max(first) < min(second)
    assert first == list(range(first[0], first[0] + 5))  # nobody else drew in between
    assert any("InitPlan" in line for line in plan), plan  # once, before the values
