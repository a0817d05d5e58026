"""Bulk enrolment's CPU-bound half: rows checked and turned into the values to be stored.

No database here: validation exactly as ``PatientInput`` does it, the lookup hashes, the
encrypted contacts and the pacing start. Together these are most of the time per row, so
``campaigns.bulk`` runs this in worker processes while the parent writes the previous chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from itertools import compress
from typing import Any

from pydantic import ValidationError

from campaigns import field_crypto, pacing
from campaigns.claims import STATE_FIELDS
from campaigns.enrollments import clock_of
from campaigns.enums import Channel
from campaigns.models import Patient
from campaigns.patients import CheckedContacts, PatientInput, field_of, missing_consent
from campaigns.sendwindow import SendWindow


@dataclass(frozen=True)
class RowError:
    line: int
    message: str


@dataclass(frozen=True)
class PreparedChunk:
    """A chunk's valid rows as stored, column by column, and the rows refused.

    Columns, because every row crosses a process boundary and the writer inserts column by
    column: per-row objects cost as much to pickle as to prepare (a row's tuple and its
    pickling were ~4 µs of ~80), and the writer would only take them apart again."""

    #: The CSV line of each valid row.
    lines: list[int]
    #: ``patients`` column -> a value per valid row, contacts already encrypted.
    patients: dict[str, list[Any]]
    #: The channels (``Channel`` values) each valid row consents to.
    consents: list[tuple[str, ...]]
    #: ``enrollments`` column (state and ``STATE_FIELDS``) -> a value per valid row, from
    #: ``pacing.start``.
    enrollments: dict[str, list[Any]]
    #: What no two patients may share, as (kind, value) per valid row: see ``identities``.
    identities: list[tuple[tuple[str, str], ...]]
    #: The rows refused, by line.
    errors: list[RowError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)

    def only(self, keep: Sequence[bool], errors: list[RowError]) -> PreparedChunk:
        """The rows whose ``keep`` is true, with ``errors`` as the refused ones."""
        if all(keep):
            return replace(self, errors=errors)

        def kept(values: list[Any]) -> list[Any]:
            return list(compress(values, keep))

        return PreparedChunk(
            kept(self.lines),
            {name: kept(values) for name, values in self.patients.items()},
            kept(self.consents),
            {name: kept(values) for name, values in self.enrollments.items()},
            kept(self.identities),
            errors,
        )

    @classmethod
    def joined(cls, parts: Sequence[PreparedChunk]) -> PreparedChunk:
        """Consecutive parts of one chunk (prepared by different workers) as one."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return cls(
            [line for part in parts for line in part.lines],
            {name: [v for part in parts for v in part.patients[name]] for name in first.patients},
            [c for part in parts for c in part.consents],
            {
                name: [v for part in parts for v in part.enrollments[name]]
                for name in first.enrollments
            },
            [i for part in parts for i in part.identities],
            [e for part in parts for e in part.errors],
        )


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
            where = field_of(tuple(e["loc"]), message)
            problems.append(message if message.startswith(where) else f"{where}: {message}")
        return RowError(line, "; ".join(problems))
    if missing := missing_consent(checked):
        return RowError(line, f"{missing[0]}: {missing[1]}")
    return checked


def identities(
    refs: Sequence[str | None],
    phones: Sequence[str | None],
    emails: Sequence[str | None],
    lookups: Mapping[str, Sequence[str | None]],
) -> list[tuple[tuple[str, str], ...]]:
    """What each row may share with no other patient: its external_ref and its contacts by
    their lookup hash and, during a lookup-key rotation, by their hashes under the older keys
    too, so a patient stored before the rotation is still a clash."""
    keys = field_crypto.active()
    rows = [
        tuple((kind, value) for kind, value in (("external_ref", ref), ("phone", ph), ("email", em))
              if value)
        for ref, ph, em in zip(refs, lookups["phone_hash"], lookups["email_hash"], strict=True)
    ]  # fmt: skip
    if len(keys.lookups) == 1:
        return rows
    return [
        ids + tuple(("phone", h) for h in (keys.retired_hashes("phone", phone) if phone else ()))
        + tuple(("email", h) for h in (keys.retired_hashes("email", email) if email else ()))
        for ids, phone, email in zip(rows, phones, emails, strict=True)
    ]  # fmt: skip


def prepare(job: Job, chunk: Sequence[tuple[int, Mapping[str, Any]]]) -> PreparedChunk:
    """The chunk's ``(line, row)`` pairs, valid ones as stored and the rest refused."""
    known = CheckedContacts.of([row for _, row in chunk])
    lines: list[int] = []
    valid: list[PatientInput] = []
    errors: list[RowError] = []
    for line, row in chunk:
        data = validate(line, row, known)
        if isinstance(data, RowError):
            errors.append(data)
        else:
            lines.append(line)
            valid.append(data)
    return _as_stored(job, lines, valid, errors)


def _as_stored(
    job: Job, lines: list[int], rows: list[PatientInput], errors: list[RowError]
) -> PreparedChunk:
    """Each kind of work in a loop of its own over the chunk (encryption, lookup hashes,
    pacing): interleaved per row, they evict each other's code and tables from the CPU's
    caches, as the phone and email checks do (``CheckedContacts``): 28 -> 19 µs per row
    (``bench/HISTORY.md``, eleventh session)."""
    keys = field_crypto.active()
    emails = [row.email for row in rows]
    phones = [row.phone for row in rows]
    email_ciphertext = [keys.encrypt(v) if v else None for v in emails]
    phone_ciphertext = [keys.encrypt(v) if v else None for v in phones]
    lookups = Patient.lookup_columns_of(phones, emails)
    # The first due time depends on the zone and send time alone (same rules, same now), and
    # a clinic's patients share a few of them: each pair is worked out once per chunk.
    firsts: dict[tuple[str, time], pacing.PacingState] = {}
    starts = [
        firsts.get((row.timezone, row.send_time))
        or firsts.setdefault(
            (row.timezone, row.send_time),
            pacing.start(job.rules, clock_of(row, job.window), now=job.now),
        )
        for row in rows
    ]
    patients: dict[str, list[Any]] = {
        "first_name": [row.first_name for row in rows],
        "last_name": [row.last_name for row in rows],
        "email_ciphertext": email_ciphertext,
        "phone_ciphertext": phone_ciphertext,
        **lookups,
        "timezone": [row.timezone for row in rows],
        "preferred_channel": [row.channel.value for row in rows],
        "send_time": [row.send_time for row in rows],
        "external_ref": (refs := [row.external_ref for row in rows]),
        "created_at": [job.now] * len(rows),
    }
    enrollments = {"state": [start.state.value for start in starts]} | {
        name: [getattr(start, name) for start in starts] for name in STATE_FIELDS
    }
    sms, email = (Channel.SMS.value,), (Channel.EMAIL.value,)
    consents = [(sms if r.consent_sms else ()) + (email if r.consent_email else ()) for r in rows]
    return PreparedChunk(
        lines,
        patients,
        consents,
        enrollments,
        identities(refs, phones, emails, lookups),
        errors,
    )
