"""Fast synthetic data: patients, consents and enrollments loaded with COPY (PostgreSQL)
or one ``executemany`` per table (SQLite), bypassing the ORM so 1M rows load in seconds."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import selectinload

from bench.common import PROGRAM_DIR, TEMPLATES
from campaigns import field_crypto
from campaigns.models import Patient, ProgramVersion
from campaigns.programs import load_folder, store_version
from campaigns.runtime import Runtime

ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
#: Minutes after 09:00 for "spread over the day" send times (09:00-19:59).
DAY_MINUTES = 11 * 60

PATIENT_COLS = (
    "id", "first_name", "last_name", "email_ciphertext", "phone_ciphertext", "email_hash",
    "phone_hash", "phone_last4", "timezone", "preferred_channel", "send_time", "external_ref",
    "created_at",
)  # fmt: skip
CONSENT_COLS = ("id", "patient_id", "channel", "granted", "method", "recorded_by", "at")
ENROLLMENT_COLS = (
    "id", "patient_id", "version_id", "state", "main_position", "flare_position",
    "flare_sent", "cadence_days", "next_due_at", "settled_reports", "flare_alerted",
    "resume_pending", "enrolled_at", "row_version",
)  # fmt: skip


@dataclass(frozen=True)
class Seeded:
    version_id: int
    count: int


def phone_of(i: int) -> str:
    return f"+1{2_000_000_000 + i}"


def seed_program(rt: Runtime) -> int:
    loaded = load_folder(PROGRAM_DIR, TEMPLATES)
    with rt.session() as session:
        version, _ = store_version(session, loaded, by="bench")
        return version.id


def version_of(rt: Runtime, version_id: int) -> ProgramVersion:
    with rt.session() as session:
        version = session.scalars(
            select(ProgramVersion)
            .where(ProgramVersion.id == version_id)
            .options(selectinload(ProgramVersion.steps), selectinload(ProgramVersion.program))
        ).one()
        return version


def _send_time(i: int, spread: bool) -> time:
    if not spread:
        return time(9, 0)
    minute = (i * 37) % DAY_MINUTES
    return time(9 + minute // 60, minute % 60)


def patient_rows(start: int, n: int, *, now: datetime, spread: bool) -> Iterator[tuple[Any, ...]]:
    """Contacts encrypted and hashed as the product stores them (``Patient`` does it there)."""
    keys = field_crypto.active()
    for i in range(start, start + n):
        sms = i % 5 != 0
        email, phone = f"p{i}@example.org", phone_of(i)
        lookups = Patient.lookup_columns(phone, email)
        yield (
            i, f"Pat{i}", "Bench", keys.encrypt(email), keys.encrypt(phone),
            lookups["email_hash"], lookups["phone_hash"], lookups["phone_last4"],
            ZONES[i % len(ZONES)], "sms" if sms else "email", _send_time(i, spread),
            f"bench-{i}", now,
        )  # fmt: skip


def consent_rows(start: int, n: int, *, now: datetime) -> Iterator[tuple[Any, ...]]:
    for i in range(start, start + n):
        yield (i, i, "sms" if i % 5 != 0 else "email", True, "enrolment", "bench", now)


def enrollment_rows(
    start: int, n: int, version_id: int, *, now: datetime, due: int, spread: bool
) -> Iterator[tuple[Any, ...]]:
    """The first ``due`` rows are due a minute ago; the rest wake tomorrow (idle)."""
    tomorrow = now + timedelta(days=1)
    for i in range(start, start + n):
        if i - start < due:
            next_due = now - timedelta(minutes=1)
        else:
            offset = (i * 37) % DAY_MINUTES if spread else 0
            next_due = tomorrow + timedelta(minutes=offset)
        yield (i, i, version_id, "active", 0, 0, 0, 1, next_due, 0, False, False, now, 1)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, time):
        return value.strftime("%H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def bulk_load(
    engine: Engine, table: str, cols: Sequence[str], rows: Iterator[tuple[Any, ...]]
) -> None:
    """COPY on PostgreSQL, executemany in one transaction on SQLite."""
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            conn: Any = raw.driver_connection
            with (
                conn.cursor() as pg_cur,
                pg_cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp,
            ):
                for row in rows:
                    cp.write_row(row)
            conn.commit()
        else:
            cur: Any = raw.cursor()
            marks = ", ".join("?" for _ in cols)
            cur.execute("BEGIN")
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                (tuple(_sqlite_value(v) for v in row) for row in rows),
            )
            cur.execute("COMMIT")
            cur.close()
    finally:
        raw.close()


def populate(
    rt: Runtime, n: int, *, now: datetime, due: int = 0, spread: bool = True, start: int = 1
) -> Seeded:
    """``n`` patients, each with consent and one active enrollment in the bundled program."""
    version_id = seed_program(rt)
    engine = rt.engine
    bulk_load(engine, "patients", PATIENT_COLS, patient_rows(start, n, now=now, spread=spread))
    bulk_load(engine, "consents", CONSENT_COLS, consent_rows(start, n, now=now))
    bulk_load(
        engine,
        "enrollments",
        ENROLLMENT_COLS,
        enrollment_rows(start, n, version_id, now=now, due=due, spread=spread),
    )
    _fix_sequences(engine)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return Seeded(version_id, n)


def _fix_sequences(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in ("patients", "consents", "enrollments"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )
            )
