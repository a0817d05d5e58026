"""The outbox: planned messages and their at-most-once delivery.

A row is claimed ``planned -> sending`` by a conditional UPDATE before the provider is
called, so a redelivered task cannot send twice; a crash after the call leaves it
``sending`` and the sweep marks it ``unknown`` for staff, never re-sending blindly.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dt_time
from enum import StrEnum
from functools import cache
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Select,
    Table,
    Text,
    bindparam,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate, Update

from campaigns import lanes, sqlite_bulk
from campaigns.channels.base import DeliveryError, OutgoingMessage, waits
from campaigns.db import dialect_of, execute_plain
from campaigns.enrollments import clock_of
from campaigns.enums import Channel, EnrollmentState, MessagePurpose, MessageStatus
from campaigns.field_crypto import decrypt_stored
from campaigns.logs import get_logger
from campaigns.models import (
    OUTBOX_SENDING,
    Enrollment,
    OutboxMessage,
    Patient,
    outbox_status_in,
)
from campaigns.pgbulk import unnest_binds, unnest_values
from campaigns.prefetch import (
    among,
    among_param,
    execute_among,
    latest_consents,
    segment_limits,
)
from campaigns.provider_status import opt_out_recipient
from campaigns.runtime import Runtime
from campaigns.sendwindow import PatientClock

M = MessageStatus
_OUTBOX = cast(Table, OutboxMessage.__table__)  # Core statements for the batch path
log = get_logger(__name__)
#: A transient provider failure is retried by the redispatch sweep after this long ...
RETRY_BACKOFF = timedelta(minutes=3)
#: ... plus a random share of this, so the rows an outage deferred together do not all
#: come back in the same tick (a provider's own Retry-After is kept as given).
RETRY_JITTER = timedelta(minutes=1)
#: Ids per send task: enough to amortise a task's statements and transactions (B3's sends
#: took 54.5 µs of CPU per message in tasks of 100, 41.1 in tasks of 500, bench/HISTORY.md,
#: fifteenth session). What a killed worker can leave ``unknown`` is a claim, below.
SEND_BATCH_SIZE = 500
#: A process's first claim takes this many rows, and no claim fewer (unless the rate limit
#: allows fewer per second) ...
FIRST_CLAIM = 100
#: ... the next as many as the last one sent in about this long: a worker killed mid-claim
#: leaves about a second's sends ``unknown``, while fast sends share few statements.
CLAIM_SECONDS = 1.0
#: Sending a batch re-reads consent for its remaining rows after this many seconds.
RECHECK_CONSENT_AFTER = 1.0
#: Answers to a patient (HELP, crisis, confirmations) must fit this many SMS segments.
SYSTEM_SMS_SEGMENTS = 2


class DeliveryResult(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    WITHHELD = "withheld"
    NOT_CLAIMED = "not-claimed"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class _Recipient:
    """What sending needs of a patient. The contact columns are read still encrypted and only
    the one a row goes to is decrypted (the ORM decrypted both for every patient)."""

    id: int
    timezone: str
    send_time: dt_time
    phone_ciphertext: str | None
    email_ciphertext: str | None
    plain: dict[Channel, str | None] = field(default_factory=dict)

    def address(self, channel: Channel) -> str | None:
        if channel not in self.plain:
            raw = self.phone_ciphertext if channel == Channel.SMS else self.email_ciphertext
            self.plain[channel] = decrypt_stored(raw)
        return self.plain[channel]


def _recipients(session: Session, patient_ids: Collection[int]) -> dict[int, _Recipient]:
    rows = execute_among(session, _recipients_query, patient_ids)
    return {row[0]: _Recipient(*row) for row in rows}


# The send path's statements are built once per dialect: building a batch's statements and
# their cache keys cost ~4% of B3 (bench/HISTORY.md, eighth session).


@cache
def _recipients_query(dialect: str) -> Select[Any]:
    table = cast(Table, Patient.__table__)
    raw = [type_coerce(table.c[n], Text()) for n in ("phone_ciphertext", "email_ciphertext")]
    return select(Patient.id, Patient.timezone, Patient.send_time, *raw).where(
        among_param(dialect, Patient.id, "ids")
    )


@cache
def _states_query(dialect: str) -> Select[tuple[int, EnrollmentState]]:
    return select(Enrollment.id, Enrollment.state).where(among_param(dialect, Enrollment.id, "ids"))


class _Claimed(NamedTuple):
    """A claimed row as the send path reads it. A SQLAlchemy ``Row``'s ``row.name`` raises
    and catches an ``AttributeError`` before it finds the column (~450 ns against ~30 for a
    named tuple's field), and the claim reads about 25 of them per message."""

    id: int
    patient_id: int
    enrollment_id: int | None
    step_id: int | None
    purpose: MessagePurpose
    channel: Channel
    subject: str | None
    body_text: str
    body_html: str | None


#: The outbox columns the send path reads, as plain values (no ORM objects per row).
_SEND_COLUMNS = [_OUTBOX.c[n] for n in _Claimed._fields]


@dataclass
class _Checks:
    """What the send-time checks need for a batch, read with one query each."""

    consents: dict[tuple[int, Channel], bool]
    states: dict[int, EnrollmentState]

    @classmethod
    def load(cls, session: Session, rows: Sequence[_Claimed]) -> _Checks:
        program = [r for r in rows if r.purpose == MessagePurpose.PROGRAM]
        enrollment_ids = {r.enrollment_id for r in program if r.enrollment_id is not None}
        states = execute_among(session, _states_query, enrollment_ids)
        return cls(
            latest_consents(session, {r.patient_id for r in program}),
            {eid: state for eid, state in states} if enrollment_ids else {},
        )

    def withhold_reason(self, row: _Claimed, patient: _Recipient) -> str | None:
        """Consent and opt-out are checked again at send time: STOP wins over anything planned.

        Answers to a patient's own message (confirmations, HELP, crisis resources) need no
        program consent: carriers require the STOP/HELP answers, and crisis text is never held.
        """
        if row.purpose != MessagePurpose.PROGRAM:
            return None if patient.address(row.channel) else "no address"
        if not self.consents.get((patient.id, row.channel), False):
            return f"withheld: no {row.channel.value} consent"
        state = self.states.get(row.enrollment_id) if row.enrollment_id is not None else None
        if state in (EnrollmentState.OPTED_OUT, EnrollmentState.WITHDRAWN):
            return f"withheld: enrollment {state.value}"
        if not patient.address(row.channel):
            return f"withheld: no {row.channel.value} address"
        return None


def deliver(rt: Runtime, outbox_id: int, *, now: datetime) -> DeliveryResult:
    """Send one outbox row at most once; program messages wait for the patient's window."""
    return deliver_batch(rt, [outbox_id], now=now)[outbox_id]


def deliver_batch(
    rt: Runtime, outbox_ids: Sequence[int], *, now: datetime
) -> dict[int, DeliveryResult]:
    """Send many rows, each at most once, with a few statements per claim instead of per row.

    Rows are claimed about a second's sending at a time, so a worker killed mid-batch leaves
    few rows ``sending`` (later ``unknown``): what the last claim in this process sent per
    ``CLAIM_SECONDS`` (``FIRST_CLAIM`` rows before any), at least ``FIRST_CLAIM`` rows and
    never more than a second's worth of rate-limit tokens.
    """
    ids = list(dict.fromkeys(outbox_ids))
    results: dict[int, DeliveryResult] = {}
    start = 0
    while start < len(ids):
        chunk = ids[start : start + _claim_size(rt, rt.send_pace)]
        began = time.perf_counter()
        results.update(_deliver_chunk(rt, chunk, now=now))
        start += len(chunk)
        rt.send_pace = len(chunk) / max(time.perf_counter() - began, 1e-6)
    return results


def _claim_size(rt: Runtime, sent_per_second: float | None) -> int:
    """Rows the next claim takes: ``CLAIM_SECONDS`` of sending at the pace the last claim
    went out (None: none yet), never under ``FIRST_CLAIM`` rows' worth nor faster than the
    rate limit (under one token per second: one row at a time)."""
    pace = max(sent_per_second or 0.0, FIRST_CLAIM / CLAIM_SECONDS)
    if rt.limiter is not None:
        pace = min(pace, *rt.limiter.rates.values())
    return max(1, int(pace * CLAIM_SECONDS))


def _deliver_chunk(rt: Runtime, ids: list[int], *, now: datetime) -> dict[int, DeliveryResult]:
    results = dict.fromkeys(ids, DeliveryResult.NOT_CLAIMED)
    with rt.session() as session:
        claimed = _claim_batch(rt, session, ids, results, now=now)
    sent: list[tuple[int, str]] = []
    try:
        _send_claimed(rt, claimed, results, sent, now=now)
    finally:
        _mark_sent(rt, sent, now=now)
        results.update(dict.fromkeys((i for i, _ in sent), DeliveryResult.SENT))
        # One line per chunk, ids grouped by result ("sent": [...], "deferred": [...]): a
        # line per message cost ~40 µs of a send's CPU, and the outbox rows hold the rest.
        by_result: dict[str, list[int]] = {}
        for outbox_id in ids:
            by_result.setdefault(results[outbox_id].value, []).append(outbox_id)
        log.info("deliver", **by_result)
    return results


def _claim_batch(
    rt: Runtime,
    session: Session,
    ids: list[int],
    results: dict[int, DeliveryResult],
    *,
    now: datetime,
) -> list[tuple[OutgoingMessage, bool]]:
    """One conditional UPDATE claims every row still ``planned`` and returns what sending
    needs; the window, consent and opt-out checks then run on prefetched data, and the rows
    that fail them are given back in the same transaction, committed before any provider is
    called. (Reading the rows and then claiming them was two statements for the same rows.)"""
    rows = sorted(_claim(session, ids, now), key=lambda r: r.id)
    patients = _recipients(session, {r.patient_id for r in rows})
    checks = _Checks.load(session, rows)
    ready: list[_Claimed] = []
    withheld: list[dict[str, Any]] = []
    for row in rows:
        patient = patients[row.patient_id]
        clock = clock_of(patient, rt.window)
        if row.purpose == MessagePurpose.PROGRAM and not clock.in_window(now):
            _defer_to_next_window(session, row, clock, now=now)
            results[row.id] = DeliveryResult.DEFERRED
        elif (reason := checks.withhold_reason(row, patient)) is not None:
            withheld.append({"oid": row.id, "reason": reason})
            results[row.id] = DeliveryResult.WITHHELD
        else:
            ready.append(row)
    if withheld:
        session.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == bindparam("oid"), _OUTBOX.c.status == M.SENDING)
            .values(status=M.FAILED, error=bindparam("reason"), **_UNCLAIMED),
            withheld,
        )
    limits = segment_limits(session, {r.step_id for r in ready if r.step_id is not None})
    return [
        (
            OutgoingMessage(
                outbox_id=row.id,
                patient_id=row.patient_id,
                channel=row.channel,
                to=patients[row.patient_id].address(row.channel) or "",
                body_text=row.body_text,
                subject=row.subject,
                body_html=row.body_html,
                max_segments=limits.get(row.step_id or 0) or SYSTEM_SMS_SEGMENTS,
            ),
            row.purpose == MessagePurpose.PROGRAM,
        )
        for row in ready
    ]


#: A claimed row given back before any provider was called: as if never claimed.
_UNCLAIMED = {"sending_at": None, "attempts": _OUTBOX.c.attempts - 1}


def _claim(session: Session, ids: list[int], now: datetime) -> list[_Claimed]:
    """``planned -> sending`` in one statement; only the rows it changed are ours to send,
    returned with what sending needs."""
    if not ids:
        return []
    return [_Claimed(*row) for row in execute_among(session, _claim_statement, ids, now=now)]


@cache
def _claim_statement(dialect: str) -> ReturningUpdate[Any]:
    """The rows are found by primary key. The status test is written ``(..) IS TRUE`` so
    that no index on ``status`` can serve it: on PostgreSQL with statistics from when the
    outbox was small, the planner read every planned row through the index of planned rows
    and filtered them by id (a 100-row claim among 30k planned: 8.0 -> 1.6 ms; it was 38%
    of PostgreSQL's statement time in B4, bench/HISTORY.md, tenth session)."""
    table = _OUTBOX
    return (
        update(table)
        .where(among_param(dialect, table.c.id, "ids"), (table.c.status == M.PLANNED).is_(true()))
        .values(
            status=M.SENDING,
            sending_at=bindparam("now", type_=table.c.sending_at.type),
            attempts=table.c.attempts + 1,
        )
        .returning(*_SEND_COLUMNS)
    )


def _defer_to_next_window(
    session: Session, row: _Claimed, clock: PatientClock, *, now: datetime
) -> None:
    """The message now belongs to the morning it will go out on, so the enrollment's next
    message moves a day too: still one program message a day, still in order."""
    planned_at = clock.next_slot(now)
    day = clock.local_date(planned_at)
    session.execute(
        update(_OUTBOX)
        .where(_OUTBOX.c.id == row.id, _OUTBOX.c.status == M.SENDING)
        .values(
            status=M.PLANNED, planned_at=planned_at, local_date=day, lease_until=None, **_UNCLAIMED
        )
    )
    enrollment = session.get(Enrollment, row.enrollment_id) if row.enrollment_id else None
    if enrollment is None or (enrollment.last_program_send_on or day) > day:
        return
    enrollment.last_program_send_on = day
    after = clock.slot(day + timedelta(days=max(enrollment.cadence_days, 1)))
    if enrollment.next_due_at is not None and enrollment.next_due_at < after:
        enrollment.next_due_at = after


def _send_claimed(
    rt: Runtime,
    claimed: list[tuple[OutgoingMessage, bool]],
    results: dict[int, DeliveryResult],
    sent: list[tuple[int, str]],
    *,
    now: datetime,
) -> None:
    """Provider calls, outside any transaction; ``sent`` collects receipts for one UPDATE.

    Patients' messages overlap on ``send_threads`` threads; one patient's go one at a time,
    in order, so a STOP that arrives while a batch is being sent (consent is read again once
    sending has taken ``RECHECK_CONSENT_AFTER``) or a provider opt-out (21610) holds that
    patient's later messages. If the limiter or a transport fails unexpectedly, no call
    starts after it and every row no provider was handed goes back to ``planned``.
    """
    watch = _ConsentWatch(rt, claimed)
    lock = threading.Lock()
    unsent = {m.outbox_id for m, _ in claimed}  # not handed to a provider (yet)

    def settle(message: OutgoingMessage, result: DeliveryResult) -> None:
        with lock:
            results[message.outbox_id] = result
            unsent.discard(message.outbox_id)

    def step(item: tuple[OutgoingMessage, bool], stop: threading.Event) -> None:
        message, program = item
        key = (message.patient_id, message.channel)
        if program and watch.holds(key):
            settle(message, _withhold_claimed(rt, message))
            return
        if rt.limiter is not None:
            rt.limiter.wait(message.channel)  # outside any transaction: no lock held
        if stop.is_set():  # another call failed while this one waited for a token
            return
        with lock:
            unsent.discard(message.outbox_id)
        try:
            receipt = rt.transports[message.channel].send(message)
        except DeliveryError as exc:
            if exc.opted_out:
                watch.revoke(key)
            settle(message, _record_failure(rt, message, exc, now=now))
            return
        with lock:
            sent.append((message.outbox_id, receipt.provider_id[:100]))

    try:
        patients = lanes.group(claimed, key=lambda item: item[0].patient_id)
        lanes.run_lanes(patients, step, threads=_send_threads(rt, claimed))
    except Exception:  # a limiter (Redis) or transport failure: the rest were never sent
        with lock:
            never_sent = sorted(unsent)
        _release(rt, never_sent)
        raise


def _send_threads(rt: Runtime, claimed: list[tuple[OutgoingMessage, bool]]) -> int:
    """``send_threads`` when a transport in the batch waits on its provider; one thread when
    none does. Under the GIL, threads overlap only waiting: for sends that only compute they
    added hand-offs, ~9 µs per message in B3 (``bench/HISTORY.md``, fifteenth session)."""
    transports = [rt.transports.get(channel) for channel in {m.channel for m, _ in claimed}]
    if any(transport is None or waits(transport) for transport in transports):
        return rt.settings.send_threads
    return 1


class _ConsentWatch:
    """The batch's view of revoked consent, shared by its sending threads: re-read at most
    once per ``RECHECK_CONSENT_AFTER``, plus the opt-outs providers report."""

    def __init__(self, rt: Runtime, claimed: list[tuple[OutgoingMessage, bool]]) -> None:
        self._rt = rt
        self._program = [m for m, is_program in claimed if is_program]
        self._revoked: set[tuple[int, Channel]] = set()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def holds(self, key: tuple[int, Channel]) -> bool:
        with self._lock:
            if time.monotonic() - self._checked > RECHECK_CONSENT_AFTER:
                self._revoked |= _revoked(self._rt, self._program)
                self._checked = time.monotonic()
            return key in self._revoked

    def revoke(self, key: tuple[int, Channel]) -> None:
        with self._lock:
            self._revoked.add(key)


def _revoked(rt: Runtime, program: list[OutgoingMessage]) -> set[tuple[int, Channel]]:
    with rt.session() as session:
        consents = latest_consents(session, {m.patient_id for m in program})
    return {
        (m.patient_id, m.channel)
        for m in program
        if not consents.get((m.patient_id, m.channel), False)
    }


def _release(rt: Runtime, ids: list[int]) -> None:
    """Claimed rows no provider was called for go back to ``planned`` for the retry."""
    if not ids:
        return
    table = _OUTBOX
    with rt.session() as session:
        session.execute(
            update(table)
            .where(among(session, table.c.id, ids), table.c.status == M.SENDING)
            .values(status=M.PLANNED, lease_until=None, **_UNCLAIMED)
        )


def _withhold_claimed(rt: Runtime, message: OutgoingMessage) -> DeliveryResult:
    with rt.session() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message.outbox_id, OutboxMessage.status == M.SENDING)
            .values(status=M.FAILED, error=f"withheld: no {message.channel.value} consent")
        )
    return DeliveryResult.WITHHELD


def _mark_sent(rt: Runtime, sent: list[tuple[int, str]], *, now: datetime) -> None:
    """Every receipt of a batch in one executemany; only rows still ``sending`` move."""
    if not sent:
        return
    params = [{"oid": oid, "pid": pid, "now": now} for oid, pid in sent]
    with rt.session() as session:
        dialect = dialect_of(session)
        statement = _receipts_statement(dialect)
        if dialect == "postgresql":  # one statement, not one per row
            execute_plain(session, statement, {**unnest_values(params, _RECEIPT), "now": now})
            return
        sqlite_bulk.executemany(session.connection(), statement, params)


#: A receipt's keys and the columns whose types they have.
_RECEIPT = {"oid": "id", "pid": "provider_id"}


@cache
def _receipts_statement(dialect: str) -> Update:
    table = _OUTBOX
    sent_at = bindparam("now", type_=table.c.sent_at.type)
    if dialect == "postgresql":
        rows = unnest_binds(table, _RECEIPT)
        return (
            update(table)
            .where(table.c.id == rows.c.oid, table.c.status == M.SENDING)
            .values(status=M.SENT, sent_at=sent_at, provider_id=rows.c.pid, error=None)
        )
    return (
        update(table)
        .where(table.c.id == bindparam("oid"), table.c.status == M.SENDING)
        .values(status=M.SENT, sent_at=sent_at, provider_id=bindparam("pid"), error=None)
    )


def retry_delay(retry_after: float | None, *, spread: float) -> timedelta:
    """How long a transient failure waits; ``spread`` in [0, 1) places it in the jitter."""
    if retry_after:
        return timedelta(seconds=retry_after)
    return RETRY_BACKOFF + RETRY_JITTER * min(max(spread, 0.0), 1.0)


def _record_failure(
    rt: Runtime, outgoing: OutgoingMessage, exc: DeliveryError, *, now: datetime
) -> DeliveryResult:
    """Permanent: failed with the reason. Transient: planned again after a back-off.
    Ambiguous: ``unknown``, never retried blindly."""
    backoff = retry_delay(exc.retry_after, spread=random.random())
    with rt.session() as session:
        status = M.UNKNOWN if exc.ambiguous else M.FAILED if exc.permanent else M.PLANNED
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == outgoing.outbox_id, OutboxMessage.status == M.SENDING)
            .values(
                status=status, error=exc.reason[:500], planned_at=now + backoff, lease_until=None
            )
        )
        if exc.opted_out:
            opt_out_recipient(session, outgoing, exc.reason, now=now)
    if exc.ambiguous:
        return DeliveryResult.UNKNOWN
    return DeliveryResult.FAILED if exc.permanent else DeliveryResult.DEFERRED


def sweep_stale_sending(session: Session, *, now: datetime, stale_after: timedelta) -> int:
    """A row stuck in ``sending`` may or may not have gone out: say so, never resend blindly."""
    result = session.execute(
        update(OutboxMessage)
        .where(outbox_status_in(OUTBOX_SENDING), OutboxMessage.sending_at <= now - stale_after)
        .values(status=M.UNKNOWN, error="provider call did not complete; delivery unknown")
    )
    return int(getattr(result, "rowcount", 0))
