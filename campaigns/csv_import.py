"""Bulk enrolment from a CSV file, with a row-by-row report.

Columns (header row required, any order; ``send_time`` and ``external_ref`` may be left out)::

    first_name,last_name,email,phone,timezone,channel,send_time,consent_sms,consent_email,
    program,external_ref

- ``channel`` is ``sms`` or ``email``; the patient must have consented to it
  (``consent_sms`` / ``consent_email``: yes/no, true/false, 1/0, y/n; empty means no).
- ``timezone`` is an IANA name (``America/Chicago``); ``send_time`` is ``HH:MM`` (default 10:00).
- ``program`` is the program's slug; patients start on its newest version.

**Per row, not all-or-nothing.** Each row is enrolled in its own transaction, exactly as
if typed into the enrol form: a good row is stored even when its neighbours are rejected,
and a rejected row stores nothing. The report lists every rejected row by its number (the
header is row 1, so the first patient is row 2, as a spreadsheet shows it), the field and
the reason, so the file can be fixed and the rejected rows uploaded again; rows already
enrolled are then refused as duplicates rather than enrolled twice.

**The whole file is refused up front**, with nothing stored, for structural problems: not
UTF-8, no header, missing required or unknown columns, or more than 50,000 rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from campaigns.models import User
from campaigns.sendwindow import SendWindow
from campaigns.staff import EnrolmentRejected, enrol, validate_enrolment

MAX_ROWS = 50_000
REQUIRED = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "timezone",
    "channel",
    "consent_sms",
    "consent_email",
    "program",
)
OPTIONAL = ("send_time", "external_ref")
COLUMNS = REQUIRED + OPTIONAL
_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0", ""}


class FileRejected(ValueError):
    """The file as a whole cannot be imported; nothing was stored."""


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    reason: str


@dataclass(frozen=True)
class RowEnrolled:
    row: int
    patient_id: int
    enrollment_id: int


@dataclass
class ImportReport:
    total: int = 0
    enrolled: list[RowEnrolled] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)

    @property
    def rejected_rows(self) -> int:
        return len({e.row for e in self.rejected})


def read_rows(data: bytes) -> list[dict[str, str]]:
    """Structural checks on the whole file; returns the rows as dicts of stripped text."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(f"the file is not UTF-8 text (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if not header:
        raise FileRejected("the file is empty: expected a header row")
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing:
        raise FileRejected(f"missing required column(s): {', '.join(missing)}")
    if unknown:
        raise FileRejected(f"unknown column(s): {', '.join(unknown)}")
    reader.fieldnames = header
    rows: list[dict[str, str]] = []
    for raw in reader:
        if len(rows) >= MAX_ROWS:
            raise FileRejected(f"the file has more than {MAX_ROWS} rows; split it")
        rows.append({k: (v or "").strip() if k else "\x00extra" for k, v in raw.items()})
    return rows


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not yes or no")


def _input(row: Mapping[str, str]) -> dict[str, object]:
    """Row text to enrolment input; raises EnrolmentRejected naming every bad field."""
    errors: dict[str, str] = {}
    if None in row or any(k == "" for k in row):
        errors["row"] = "the row has more values than the header has columns"
    values: dict[str, object] = {k: v for k, v in row.items() if k in COLUMNS and v != ""}
    for name in ("consent_sms", "consent_email"):
        try:
            values[name] = _flag(row.get(name, ""))
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise EnrolmentRejected(errors)
    return values


def _rows_with_numbers(rows: list[dict[str, str]]) -> Iterator[tuple[int, dict[str, str]]]:
    for index, row in enumerate(rows):
        yield index + 2, row


def import_csv(
    data: bytes,
    sessions: Callable[[], AbstractContextManager[Session]],
    user_id: int,
    window: SendWindow,
    *,
    now: datetime,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Enrol every good row, each in its own transaction from ``sessions()``."""
    rows = read_rows(data)
    report = ImportReport(total=len(rows))
    for number, row in _rows_with_numbers(rows):
        try:
            data_in = validate_enrolment(_input(row))
            with sessions() as session:
                user = session.get_one(User, user_id)
                enrollment = enrol(session, data_in, user, window, source="csv import", now=now)
                report.enrolled.append(RowEnrolled(number, enrollment.patient_id, enrollment.id))
        except EnrolmentRejected as exc:
            report.rejected += [RowError(number, f, r) for f, r in exc.errors.items()]
        if progress is not None:
            progress(report)
    return report
