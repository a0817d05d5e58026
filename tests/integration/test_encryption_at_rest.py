"""Patient phone numbers and emails are ciphertext in the database, on both backends, yet
every lookup the product needs (replies, duplicate checks, staff search) still works."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from typer.testing import CliRunner

from campaigns import field_crypto
from campaigns.bulk import bulk_enroll
from campaigns.cli import app
from campaigns.db import alembic_config
from campaigns.field_crypto import FieldKeys
from campaigns.key_rotation import reencrypt_patients
from campaigns.models import Patient, ProgramVersion
from campaigns.patient_views import PatientFilters, find_patients
from campaigns.patients import find_by_phone
from campaigns.runtime import Runtime
from campaigns.staff import Enrolment, check_duplicates
from config.settings import get_settings
from tests.factories import load_program, make_patient
from worker.doctor import Verdict, check_patient_keys

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
RAW = "SELECT phone_ciphertext, email_ciphertext, phone_hash, email_hash, phone_last4 FROM patients"


@pytest.fixture
def keys_restored(rt: Runtime) -> Iterator[None]:
    """Tests here install other keys; everything after them must see the run's keys again."""
    yield
    field_crypto.install(FieldKeys.from_settings(rt.settings))


def _contacts(rt: Runtime, pid: int) -> tuple[str | None, str | None]:
    with rt.session() as session:
        patient = session.get_one(Patient, pid)
        return patient.phone_e164, patient.email


def test_contacts_are_ciphertext_at_rest_and_plain_through_the_model(rt: Runtime) -> None:
    pid = make_patient(rt, now=NOW)
    phone, email = _contacts(rt, pid)
    assert phone and email
    with rt.engine.connect() as conn:
        row = conn.execute(text(RAW)).one()
    stored = " ".join(str(v) for v in row)
    assert phone[2:] not in stored and email not in stored and email.split("@")[0] not in stored
    assert row.phone_last4 == phone[-4:]
    if rt.engine.dialect.name == "sqlite":
        rt.engine.dispose()  # checkpoints the WAL into the main file
        database = Path(rt.settings.resolved_database_url.removeprefix("sqlite:///"))
        assert phone.encode() not in database.read_bytes()
        assert email.encode() not in database.read_bytes()


def test_lookups_work_by_keyed_hash_and_last_four(rt: Runtime) -> None:
    pid = make_patient(rt, now=NOW)
    phone, email = _contacts(rt, pid)
    assert phone and email
    with rt.session() as session:
        found = find_by_phone(session, phone)
        assert found is not None and found.id == pid
        assert find_by_phone(session, "+16505550000") is None
        twin = Enrolment(first_name="Other", phone=phone, email=email.upper(), program="mini",
                         timezone="America/New_York", channel="sms", consent_sms=True)  # fmt: skip
        assert set(check_duplicates(session, twin)) == {"phone", "email"}
        rows = find_patients(session, PatientFilters(q=phone[-4:]))
        assert [r.id for r in rows] == [pid] and rows[0].phone_last4 == phone[-4:]


def test_bulk_enrolment_refuses_repeated_phones_and_emails(rt: Runtime) -> None:
    existing = make_patient(rt, now=NOW)
    _, taken_email = _contacts(rt, existing)
    assert taken_email
    version_id = load_program(rt)
    with rt.session() as session:
        version = session.scalars(
            select(ProgramVersion).where(ProgramVersion.id == version_id)
        ).one()
        session.expunge(version)
    base = {"first_name": "Row", "timezone": "America/Chicago", "channel": "sms",
            "consent_sms": "true"}  # fmt: skip
    rows = [
        {**base, "phone": "+16502539001"},
        {**base, "phone": "+1 650 253 9001"},  # the same number, written differently
        {**base, "phone": "+16502539002", "email": taken_email.upper()},
        {**base, "phone": "+16502539003"},
    ]
    result = bulk_enroll(rt.session, rows, version, rt.window, by="test", now=NOW)
    assert result.created == 2
    problems = {e.line: e.message for e in result.errors}
    assert problems == {
        3: "phone repeats an earlier row",
        4: "email already belongs to a patient",
    }


def test_migration_encrypts_existing_rows_and_downgrade_restores_them(
    rt: Runtime, db_url: str
) -> None:
    pid = make_patient(rt, now=NOW)
    phone, email = _contacts(rt, pid)
    with rt.engine.begin() as conn:
        cfg = alembic_config(db_url)
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
        plain = conn.execute(text("SELECT phone_e164, email FROM patients")).one()
        assert tuple(plain) == (phone, email)
        command.upgrade(cfg, "head")
        stored = " ".join(str(v) for v in conn.execute(text(RAW)).one())
    assert phone and phone[2:] not in stored
    assert _contacts(rt, pid) == (phone, email)
    with rt.session() as session:
        assert find_by_phone(session, phone) is not None


def test_contacts_stored_as_fernet_tokens_still_read_and_reencrypt_to_gcm(
    rt: Runtime, keys_restored: None
) -> None:
    """Rows written before the switch to AES-GCM keep working, and the rotation command
    rewrites them in the new format."""
    pid = make_patient(rt, now=NOW)
    phone, email = _contacts(rt, pid)
    assert phone and email
    data = rt.settings.data_keys.get_secret_value() if rt.settings.data_keys else ""
    legacy = Fernet(data.split(",")[0].encode())
    with rt.engine.begin() as conn:
        conn.execute(
            text("UPDATE patients SET phone_ciphertext = :p, email_ciphertext = :e WHERE id = :i"),
            {"p": legacy.encrypt(phone.encode()).decode(),
             "e": legacy.encrypt(email.encode()).decode(), "i": pid},
        )  # fmt: skip
    assert _contacts(rt, pid) == (phone, email)
    assert check_patient_keys(rt).verdict == Verdict.OK
    with rt.session() as session:
        assert find_by_phone(session, phone) is not None
    assert reencrypt_patients(rt.session, field_crypto.active()).unreadable == []
    with rt.engine.connect() as conn:
        row = conn.execute(text(RAW)).one()
    assert row.phone_ciphertext.startswith(field_crypto.GCM_PREFIX)
    assert row.email_ciphertext.startswith(field_crypto.GCM_PREFIX)
    assert _contacts(rt, pid) == (phone, email)


def test_rotating_both_keys_retires_the_old_ones(rt: Runtime, keys_restored: None) -> None:
    pids = [make_patient(rt, now=NOW) for _ in range(3)]
    before = [_contacts(rt, p) for p in pids]
    phone, email = before[0]
    assert phone and email
    old = field_crypto.active()
    new_data = Fernet.generate_key().decode()
    old_data = rt.settings.data_keys.get_secret_value() if rt.settings.data_keys else ""
    old_lookup = rt.settings.lookup_key.get_secret_value() if rt.settings.lookup_key else ""
    field_crypto.install(FieldKeys.parse(f"{new_data},{old_data}", "n" * 40))
    with rt.session() as session:
        assert find_by_phone(session, phone) is None, "old hashes, only the new lookup key"
    field_crypto.install(FieldKeys.parse(f"{new_data},{old_data}", f"{'n' * 40},{old_lookup}"))
    with rt.session() as session:  # mid-rotation: a STOP from this phone still finds them
        found = find_by_phone(session, phone)
        assert found is not None and found.id == pids[0]
        twin = Enrolment(first_name="Twin", phone=phone, email=email, program="mini",
                         timezone="America/New_York", channel="sms", consent_sms=True)  # fmt: skip
        assert set(check_duplicates(session, twin)) == {"phone", "email"}
    rotating = check_patient_keys(rt)
    assert rotating.verdict == Verdict.WARN
    assert "2 data keys and 2 lookup keys" in rotating.detail
    result = reencrypt_patients(rt.session, field_crypto.active(), chunk=2)
    assert (result.patients, result.unreadable) == (3, [])
    field_crypto.install(FieldKeys.parse(new_data, "n" * 40))
    assert check_patient_keys(rt).verdict == Verdict.OK
    assert [_contacts(rt, p) for p in pids] == before
    with rt.session() as session:
        assert all(find_by_phone(session, phone or "") for phone, _ in before)
        tokens = session.execute(text("SELECT phone_ciphertext FROM patients")).scalars()
        for token in tokens:
            with pytest.raises(field_crypto.FieldKeyError):
                old.decrypt(token)


def test_bulk_enrolment_sees_patients_hashed_under_the_previous_lookup_key(
    rt: Runtime, keys_restored: None
) -> None:
    _, taken_email = _contacts(rt, make_patient(rt, now=NOW))
    assert taken_email
    data = rt.settings.data_keys.get_secret_value() if rt.settings.data_keys else ""
    old_lookup = rt.settings.lookup_key.get_secret_value() if rt.settings.lookup_key else ""
    field_crypto.install(FieldKeys.parse(data, f"{'n' * 40},{old_lookup}"))
    version_id = load_program(rt)
    with rt.session() as session:
        version = session.get_one(ProgramVersion, version_id)
        session.expunge(version)
    rows = [{"first_name": "Row", "timezone": "America/Chicago", "channel": "sms",
             "consent_sms": "true", "phone": "+16502539004", "email": taken_email}]  # fmt: skip
    result = bulk_enroll(rt.session, rows, version, rt.window, by="test", now=NOW)
    assert result.created == 0
    assert [(e.line, e.message) for e in result.errors] == [
        (2, "email already belongs to a patient")
    ]


def test_doctor_names_a_wrong_data_key_and_a_wrong_lookup_key(
    rt: Runtime, keys_restored: None
) -> None:
    make_patient(rt, now=NOW)
    assert check_patient_keys(rt).verdict == Verdict.OK
    data = rt.settings.data_keys.get_secret_value() if rt.settings.data_keys else ""
    field_crypto.install(FieldKeys.parse(data, "w" * 40))
    wrong_lookup = check_patient_keys(rt)
    assert wrong_lookup.verdict == Verdict.FAIL and "CAMPAIGNS_LOOKUP_KEY" in wrong_lookup.detail
    field_crypto.install(FieldKeys.parse(Fernet.generate_key().decode(), "w" * 40))
    wrong_data = check_patient_keys(rt)
    assert wrong_data.verdict == Verdict.FAIL and "CAMPAIGNS_DATA_KEYS" in wrong_data.detail


def test_keys_cli_prints_usable_keys_and_reencrypts(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, keys_restored: None
) -> None:
    pid = make_patient(rt, now=NOW)
    before = _contacts(rt, pid)
    runner = CliRunner()
    printed = runner.invoke(app, ["keys", "new"])
    assert printed.exit_code == 0, printed.output
    env = dict(line.split("=", 1) for line in printed.output.split())
    new_keys = FieldKeys.parse(env["CAMPAIGNS_DATA_KEYS"], env["CAMPAIGNS_LOOKUP_KEY"])
    old_data = rt.settings.data_keys.get_secret_value() if rt.settings.data_keys else ""
    monkeypatch.setenv("CAMPAIGNS_DATA_DIR", str(rt.settings.data_dir))
    monkeypatch.setenv("CAMPAIGNS_DATABASE_URL", rt.settings.resolved_database_url)
    monkeypatch.setenv("CAMPAIGNS_DATA_KEYS", f"{env['CAMPAIGNS_DATA_KEYS']},{old_data}")
    monkeypatch.setenv("CAMPAIGNS_LOOKUP_KEY", env["CAMPAIGNS_LOOKUP_KEY"])
    get_settings.cache_clear()
    try:
        done = runner.invoke(app, ["keys", "reencrypt"])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0, done.output
    assert "re-encrypted 1 patient(s)" in done.output
    field_crypto.install(new_keys)
    assert _contacts(rt, pid) == before
