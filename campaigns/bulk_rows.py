"""Bulk enrolment's CPU-bound half: rows checked and turned into the values to be stored.

No database here: validation exactly as ``PatientInput`` does it, the lookup hashes, the
encrypted contacts and the pacing start. Together these are most of the time per row, so
``campaigns.bulk`` runs this in worker processes while the parent writes the previous chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from campaigns import field_crypto, pacing
from campaigns.claims import STATE_FIELDS
from campaigns.enums import Channel
from campaigns.models import Patient
from campaigns.patients import CheckedContacts, PatientInput, field_of, missing_consent
from campaigns.sendwindow import PatientClock, SendWindow


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


#: The ``patients`` columns a prepared row carries, in ``Prepared.patient`` order.
PATIENT_COLUMNS = ("first_name", "last_name", "email_ciphertext", "phone_ciphertext",
                   "email_hash", "phone_hash", "phone_last4", "timezone", "preferred_channel",
                   "send_time", "external_ref", "created_at")  # fmt: skip
#: The enrollment columns set from the pacing start, in ``Prepared.enrollment`` order.
ENROLLMENT_COLUMNS = ("state", *STATE_FIELDS)


class Prepared(NamedTuple):
    """A valid row as stored. Plain tuples, because every row crosses a process boundary
    and pickling objects would cost as much as preparing them."""

    line: int
    #: ``PATIENT_COLUMNS`` values, contacts already encrypted.
    patient: tuple[Any, ...]
    #: Channels consented to (``Channel`` values).
    consents: tuple[str, ...]
    #: ``ENROLLMENT_COLUMNS`` values of ``pacing.start``.
    enrollment: tuple[Any, ...]
    #: What no two patients may share, as (kind, value): see ``identities``.
    identities: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Job:
    """What preparing a chunk needs besides its rows; small and picklable."""

    rules: pacing.PacingRules
    window: SendWindow
    now: datetime


def validate(
    line: int, row: Mapping[str, Any], known: CheckedContacts | None = None
) -> PatientInput | RowError:
    """Blank cells mean "not given", so defaults apply as they do for a form. ``known``
    holds contacts already checked with the rest of the chunk (the same outcome, faster)."""
    data = {k: v for k, v in row.items() if v not in (None, "")}
    try:
        checked = PatientInput.model_validate(data, context=known)
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


def identities(data: PatientInput, lookups: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """Contacts count by their lookup hash and, during a lookup-key rotation, by their hash
    under the older keys too, so a patient stored before the rotation is still a clash."""
    keys = field_crypto.active()
    pairs = [
        ("external_ref", data.external_ref),
        ("phone", lookups["phone_hash"]),
        ("email", lookups["email_hash"]),
    ]
    for kind, value in (("phone", data.phone), ("email", data.email)):
        pairs += [(kind, h) for h in keys.retired_hashes(kind, value)] if value else []
    return [(kind, value) for kind, value in pairs if value]


def prepare(job: Job, chunk: Sequence[tuple[int, Mapping[str, Any]]]) -> list[Prepared | RowError]:
    """Each ``(line, row)`` of the chunk as a ``Prepared`` row or the reason it is refused."""
    out: list[Prepared | RowError] = []
    known = CheckedContacts.of([row for _, row in chunk])
    for line, row in chunk:
        data = validate(line, row, known)
        out.append(data if isinstance(data, RowError) else _prepared(job, line, data))
    return out


def _prepared(job: Job, line: int, data: PatientInput) -> Prepared:
    keys = field_crypto.active()
    lookups = Patient.lookup_columns(data.phone, data.email)
    patient = (
        data.first_name,
        data.last_name,
        keys.encrypt(data.email) if data.email else None,
        keys.encrypt(data.phone) if data.phone else None,
        lookups["email_hash"],
        lookups["phone_hash"],
        lookups["phone_last4"],
        data.timezone,
        data.channel.value,
        data.send_time,
        data.external_ref,
        job.now,
    )
    consents = tuple(
        channel.value
        for channel, granted in (
            (Channel.SMS, data.consent_sms),
            (Channel.EMAIL, data.consent_email),
        )
        if granted
    )
    clock = PatientClock(ZoneInfo(data.timezone), data.send_time, job.window)
    state = pacing.start(job.rules, clock, now=job.now)
    enrollment = (state.state.value, *(getattr(state, name) for name in STATE_FIELDS))
    return Prepared(line, patient, consents, enrollment, tuple(identities(data, lookups)))
