"""The outbox's status indexes hold only rows that still wait, and every query that looks
for waiting rows reads them (migration 0009).

Nearly every outbox row ends ``sent``; when the status indexes held every row, each message
paid for their entries at every status change. The partial indexes serve a query only where
the database sees that the query implies the index's predicate, so each statement is checked
as it is sent (its SQL and parameters captured from the engine, then explained): the status
must be written into the SQL, where no prepared statement's generic plan can lose it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, event, func, select, text

from bench.datagen import populate
from bench.outbox_poll import any_unsent
from campaigns.cli import _unsettled_messages
from campaigns.dispatch_budget import REDISPATCH_AFTER
from campaigns.dispatching import in_flight
from campaigns.enums import Channel, MessageStatus
from campaigns.metrics import _gauges
from campaigns.models import OutboxMessage, UTCDateTime
from campaigns.outbox import sweep_stale_sending
from campaigns.patient_views import PatientFilters, find_patients
from campaigns.runtime import Runtime
from campaigns.scheduler import idle

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
PATIENTS = 2_000
#: One waiting row of each kind among the sent history, on these patients.
PLANNED, SENDING, FAILED, UNKNOWN = 11, 12, 13, 14


def _fill(rt: Runtime, *, analyze: bool = True) -> None:
    """Ten sent messages per patient, then one planned, sending, failed and unknown row;
    without ``analyze`` the statistics are those of an empty outbox (taken by ``populate``),
    as on SQLite, which never gathers them by itself, or before autovacuum runs."""
    populate(rt, PATIENTS, now=NOW)
    insert = text(
        "INSERT INTO outbox (patient_id, enrollment_id, occurrence, purpose, channel, body_text,"
        " status, planned_at, sending_at, sent_at, attempts, lease_until)"
        " SELECT patient_id, id, :occurrence, 'program', 'sms', 'x', :status, :planned,"
        " :sending, :sent, 1, :lease FROM enrollments WHERE :only = 0 OR patient_id = :only"
    ).bindparams(
        *(bindparam(k, type_=UTCDateTime()) for k in ("planned", "sending", "sent", "lease"))
    )
    day = timedelta(days=1)
    with rt.engine.begin() as conn:
        for occurrence in range(10):
            at = NOW - (10 - occurrence) * day
            conn.execute(insert, _row(occurrence, "sent", at, sending=at, sent=at))
        stale = NOW - REDISPATCH_AFTER - timedelta(minutes=5)
        conn.execute(insert, _row(10, "planned", stale, only=PLANNED, lease=NOW + day))
        conn.execute(insert, _row(10, "sending", stale, only=SENDING, sending=stale))
        conn.execute(insert, _row(10, "failed", stale, only=FAILED, sending=stale))
        conn.execute(insert, _row(10, "unknown", stale, only=UNKNOWN, sending=stale))
    if analyze:
        with rt.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def _row(
    occurrence: int,
    status: str,
    planned: datetime,
    *,
    only: int = 0,
    sending: datetime | None = None,
    sent: datetime | None = None,
    lease: datetime | None = None,
) -> dict[str, Any]:
    times = {"planned": planned, "sending": sending, "sent": sent, "lease": lease}
    return {"occurrence": occurrence, "status": status, "only": only} | times


@contextmanager
def _outbox_statements(rt: Runtime) -> Iterator[list[tuple[str, set[str]]]]:
    """The statements on the outbox that ask for a status, as they are sent, each with the
    outbox indexes its plan reads (explained on its own connection, inside its transaction)."""
    seen: list[tuple[str, set[str]]] = []
    prefix = "EXPLAIN QUERY PLAN " if rt.engine.dialect.name == "sqlite" else "EXPLAIN "

    def grab(conn: Connection, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if re.search(r"\boutbox\.status\b", statement):
            rows = cursor.connection.execute(prefix + statement, parameters).fetchall()
            plan = "\n".join(str(row[-1]) for row in rows)
            seen.append((statement, set(re.findall(r"ix_outbox_\w+", plan))))

    event.listen(rt.engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(rt.engine, "before_cursor_execute", grab)


def _check(rt: Runtime, run: Callable[[], Any], index: str) -> Any:
    """Run one query path; every outbox status test it sent reads ``index`` and has its
    status written into the SQL, not passed as a parameter."""
    with _outbox_statements(rt) as seen:
        result = run()
    assert seen, "the path sent no status test on the outbox"
    for statement, indexes in seen:
        tests = re.findall(r"outbox\.status (?:=|IN) \(?(\S+)", statement)
        assert tests and all(t.startswith("'") for t in tests), statement
        assert index in indexes, (statement, indexes)
    return result


@pytest.mark.parametrize("analyzed", [True, False], ids=["analyzed", "stale-statistics"])
def test_each_waiting_row_query_reads_its_partial_index(rt: Runtime, analyzed: bool) -> None:
    _fill(rt, analyze=analyzed)
    with rt.session() as session:
        sms = _check(rt, lambda: in_flight(session, now=NOW), "ix_outbox_planned")
    assert sms == {Channel.SMS: 1}
    assert _check(rt, lambda: idle(rt, NOW), "ix_outbox_planned") is False
    with rt.session() as session:
        gauges = {
            m.name: m for m in _check(rt, lambda: list(_gauges(session)), "ix_outbox_planned")
        }
    assert [s.value for s in gauges["campaigns_queue_depth"].samples] == [1]
    with rt.session() as session:
        unsettled = _check(rt, lambda: _unsettled_messages(session), "ix_outbox_unsettled")
        flagged = _check(
            rt,
            lambda: find_patients(session, PatientFilters(needs_attention=True)),
            "ix_outbox_unsettled",
        )
    assert unsettled == {FAILED: "1 failed", UNKNOWN: "1 unknown"}
    assert sorted(p.id for p in flagged) == [FAILED, UNKNOWN]
    first = PATIENTS * 5  # the bench's polls skip rows from before their run
    assert _check(rt, lambda: any_unsent(rt, first), "ix_outbox_planned") is True
    with rt.session() as session:
        swept = _check(
            rt,
            lambda: sweep_stale_sending(session, now=NOW, stale_after=timedelta(minutes=1)),
            "ix_outbox_sending",
        )
    assert swept == 1
    with rt.session() as session:
        statuses = dict(
            session.execute(
                select(OutboxMessage.patient_id, OutboxMessage.status).where(
                    OutboxMessage.occurrence == 10
                )
            )
            .tuples()
            .all()
        )
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == PATIENTS * 10 + 4
    assert statuses == {
        PLANNED: MessageStatus.PLANNED,
        SENDING: MessageStatus.UNKNOWN,
        FAILED: MessageStatus.FAILED,
        UNKNOWN: MessageStatus.UNKNOWN,
    }


def test_a_sent_outbox_leaves_the_waiting_row_indexes_empty(rt: Runtime) -> None:
    """What the indexes hold, read through each: only the rows of their statuses."""
    _fill(rt)
    indexed = {
        "ix_outbox_planned": "status = 'planned'",
        "ix_outbox_sending": "status = 'sending'",
        "ix_outbox_unsettled": "status IN ('failed', 'unknown')",
    }
    with rt.engine.connect() as conn:
        for index, predicate in indexed.items():
            query = f"SELECT patient_id FROM outbox WHERE {predicate} ORDER BY patient_id"
            if conn.dialect.name == "sqlite":  # read the index itself, whatever the planner likes
                query = query.replace("FROM outbox", f"FROM outbox INDEXED BY {index}")
                size = None
            else:
                size = conn.scalar(text("SELECT pg_relation_size(:i)"), {"i": index})
            held = conn.scalars(text(query)).all()
            expected = {"ix_outbox_planned": [PLANNED], "ix_outbox_sending": [SENDING]}
            assert held == expected.get(index, [FAILED, UNKNOWN]), index
            if size is not None:  # a few rows among 20k: the index is its first pages only
                assert size <= 2 * 8192, (index, size)
