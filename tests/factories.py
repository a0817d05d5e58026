"""Small builders for tests: one patient or enrollment at a time, with sensible defaults."""

from __future__ import annotations

import itertools
from datetime import datetime, time
from pathlib import Path

from campaigns.email_headers import EmailIdentity
from campaigns.enrollments import enroll
from campaigns.enums import Channel
from campaigns.models import Consent, Enrollment, Patient, ProgramVersion
from campaigns.patients import PatientInput, create_patient
from campaigns.programs import load_folder, store_version
from campaigns.runtime import Runtime

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MINI = FIXTURES / "programs" / "mini"
#: A clinic's email identity with a fixed key, for building emails outside a runtime.
EMAIL_IDENTITY = EmailIdentity(
    sender="care@clinic.example",
    display_name="Riverside Pain Recovery Clinic",
    reply_domain="reply.clinic.example",
    unsubscribe_mailto="unsubscribe@clinic.example",
    public_base_url="https://clinic.example",
    key=b"k" * 32,
)
_phone_counter = itertools.count(1000)


def load_program(rt: Runtime, folder: Path = MINI) -> int:
    loaded = load_folder(folder, rt.settings.templates_dir)
    with rt.session() as session:
        version, _ = store_version(session, loaded, by="test")
        return version.id


def make_patient(
    rt: Runtime,
    *,
    now: datetime,
    channel: Channel = Channel.SMS,
    timezone: str = "America/New_York",
    send_time: time = time(10, 0),
    first_name: str = "Sam",
    consent: bool = True,
) -> int:
    n = next(_phone_counter)
    data = PatientInput(
        first_name=first_name,
        last_name="Rivera",
        email=f"sam{n}@example.org",
        phone=f"+1650253{n % 10000:04d}",
        timezone=timezone,
        channel=channel,
        send_time=send_time,
        consent_sms=consent,
        consent_email=consent,
    )
    with rt.session() as session:
        return create_patient(session, data, by="test", now=now).id


def make_enrollment(
    rt: Runtime, version_id: int, *, now: datetime, **patient: object
) -> tuple[int, int]:
    patient_id = make_patient(rt, now=now, **patient)  # type: ignore[arg-type]
    with rt.session() as session:
        p = session.get_one(Patient, patient_id)
        v = session.get_one(ProgramVersion, version_id)
        e: Enrollment = enroll(session, p, v, rt.window, by="test", now=now)
        return patient_id, e.id


def revoke_sms(rt: Runtime, patient_id: int, *, at: datetime, method: str = "sms STOP") -> None:
    """The patient withdraws SMS consent (a STOP text, or staff recording it), committed."""
    with rt.session() as session:
        session.add(
            Consent(
                patient_id=patient_id,
                channel=Channel.SMS,
                granted=False,
                method=method,
                recorded_by="patient" if method == "sms STOP" else "test",
                at=at,
            )
        )
