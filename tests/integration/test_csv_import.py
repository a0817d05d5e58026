"""Bulk enrolment from CSV: per-row results, and whole-file refusal for structural faults."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from campaigns.csv_import import MAX_ROWS, FileRejected, ImportReport, import_csv
from campaigns.models import AuditEntry, Consent, Enrollment, Patient, utcnow
from campaigns.runtime import Runtime
from tests.factories import load_program
from tests.web_support import make_user

HEADER = (
    "first_name,last_name,email,phone,timezone,channel,send_time,consent_sms,consent_email,"
    "program,external_ref\n"
)
GOOD_ROWS = (
    "Ana,Diaz,ana@example.org,+16502531001,America/New_York,sms,09:00,yes,no,mini,R1\n"
    "Ben,Okafor,ben@example.org,,Europe/London,email,,no,TRUE,mini,R2\n"
    "Cai,Wu,,(650) 253-1003,Australia/Sydney,sms,18:30,1,0,mini,\n"
)


def run(rt: Runtime, text: str | bytes) -> ImportReport:
    user = make_user(rt)
    data = text.encode() if isinstance(text, str) else text
    return import_csv(data, rt.session, user.id, rt.window, now=utcnow())


def count(rt: Runtime, model: type[object]) -> int:
    with rt.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_good_file_enrols_every_row_with_consent_and_audit(rt: Runtime) -> None:
    load_program(rt)
    report = run(rt, HEADER + GOOD_ROWS)
    assert report.total == 3 and report.rejected == []
    assert [r.row for r in report.enrolled] == [2, 3, 4]
    with rt.session() as session:
        phones = session.scalars(select(Patient.phone_e164).order_by(Patient.id)).all()
        consents = session.scalars(select(Consent).order_by(Consent.id)).all()
        audits = session.scalars(select(AuditEntry).where(AuditEntry.action == "enrol")).all()
    assert phones == ["+16502531001", None, "+16502531003"]
    assert [(c.channel, c.method) for c in consents] == [
        ("sms", "csv import"),
        ("email", "csv import"),
        ("sms", "csv import"),
    ]
    assert len(audits) == 3 and count(rt, Enrollment) == 3


def test_bad_rows_are_reported_by_row_and_field_while_good_rows_enrol(rt: Runtime) -> None:
    load_program(rt)
    bad = (
        "Dee,Bad,dee@example.org,+1555,America/Chicago,sms,,yes,no,mini,\n"  # 3 bad phone
        "Eve,Zone,eve@example.org,+16502531005,Mars/Olympus,sms,,yes,no,mini,\n"  # 4 tz
        "Fay,NoConsent,fay@example.org,+16502531006,America/Chicago,sms,,no,yes,mini,\n"  # 5
        "Gus,Prog,gus@example.org,+16502531007,America/Chicago,sms,,yes,no,nope,\n"  # 6
        "Ana,Again,ana2@example.org,+16502531001,America/New_York,sms,,yes,no,mini,\n"  # 7 dup
        "Hal,Flag,hal@example.org,+16502531008,America/Chicago,sms,,maybe,no,mini,\n"  # 8
        "Ivy,Extra,ivy@example.org,+16502531009,America/Chicago,sms,,yes,no,mini,,surplus\n"  # 9
    )
    good = "Ana,Diaz,ana@example.org,+16502531001,America/New_York,sms,09:00,yes,no,mini,R1\n"
    last = "Jo,Fine,jo@example.org,+16502531010,America/Chicago,sms,,yes,no,mini,R10\n"
    report = run(rt, HEADER + good + bad + last)
    assert [r.row for r in report.enrolled] == [2, 10]
    assert [(e.row, e.field) for e in report.rejected] == [
        (3, "phone"),
        (4, "timezone"),
        (5, "consent_sms"),
        (6, "program"),
        (7, "phone"),
        (8, "consent_sms"),
        (9, "row"),
    ]
    reasons = {e.row: e.reason for e in report.rejected}
    assert "not a valid number" in reasons[3] and "IANA" in reasons[4]
    assert "already has this phone" in reasons[7] and "no program 'nope'" in reasons[6]
    assert report.rejected_rows == 7
    assert count(rt, Patient) == 2 and count(rt, Enrollment) == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"first_name,last_name\nAna,Diaz\n", "missing required column(s): email"),
        ((HEADER.rstrip("\n") + ",nickname\n" + GOOD_ROWS).encode(), "unknown column(s): nickname"),
        ((HEADER + GOOD_ROWS + "Zo\xe9,Diaz\n").encode("latin-1"), "not UTF-8"),
        (b"", "empty"),
    ],
)
def test_structurally_bad_file_is_refused_whole(rt: Runtime, data: bytes, reason: str) -> None:
    load_program(rt)
    with pytest.raises(FileRejected) as raised:
        run(rt, data)
    assert reason in str(raised.value)
    assert count(rt, Patient) == 0 and count(rt, AuditEntry) == 0


def test_too_many_rows_is_refused_before_anything_is_stored(rt: Runtime) -> None:
    load_program(rt)
    row = "Ana,Diaz,,,America/New_York,sms,,yes,no,mini,\n"
    with pytest.raises(FileRejected, match="more than 50000 rows"):
        run(rt, HEADER + GOOD_ROWS + row * (MAX_ROWS - 2))
    assert count(rt, Patient) == 0


def test_byte_order_mark_and_header_case_are_accepted(rt: Runtime) -> None:
    load_program(rt)
    report = run(rt, ("\ufeff" + HEADER.upper() + GOOD_ROWS).encode())
    assert len(report.enrolled) == 3
