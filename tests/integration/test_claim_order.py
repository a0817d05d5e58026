"""The tick reads a batch off an index when everyone is due at once: its claim off
``ix_enrollments_due``, and the planned messages it hands out again off
``ix_outbox_planned``.

With the index on ``next_due_at`` alone, or with statistics taken before the send time filled
up, PostgreSQL sorted every due row for each batch of 500 (an on-disk sort at 50k due, ~100
ms per batch), so a burst's claims grew with its square; a backlog of planned messages was
likewise sorted whole on every tick. The plan is the product here: a regression would pass
every functional test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, text, update
from sqlalchemy.orm import Session

from bench.datagen import populate
from campaigns.claims import claim_due, due_query, in_index_order
from campaigns.dispatch_budget import REDISPATCH_AFTER
from campaigns.dispatching import redispatch_query, redispatchable
from campaigns.enums import Channel
from campaigns.models import Enrollment
from campaigns.runtime import Runtime

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DUE = 10_000


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


def _assert_read_off(session: Session, query: Select[Any], index: str) -> None:
    """The statement's plan reads ``index`` in order and sorts nothing."""
    sql = str(query.compile(session.get_bind(), compile_kwargs={"literal_binds": True}))
    if session.get_bind().dialect.name == "postgresql":
        plan = session.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
        nodes = _nodes((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
        assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")], nodes
        assert {n.get("Index Name") for n in nodes} >= {index}, nodes
    else:
        steps = [row[-1] for row in session.execute(text("EXPLAIN QUERY PLAN " + sql))]
        assert not [s for s in steps if "TEMP B-TREE" in s], steps
        assert [s for s in steps if index in s], steps


def test_a_batch_is_read_off_the_due_index_when_everyone_shares_a_due_time(rt: Runtime) -> None:
    populate(rt, DUE, now=NOW)
    with rt.session() as session:  # everyone at 09:00: one due time, thousands of rows
        session.execute(update(Enrollment).values(next_due_at=NOW - timedelta(minutes=1)))
    # no ANALYZE since: the statistics still say nothing is due yet, as after a bulk enrolment
    postgresql = rt.engine.dialect.name == "postgresql"
    query = due_query(now=NOW, limit=500, locking=postgresql)
    with rt.session() as session, in_index_order(session):
        _assert_read_off(session, query, "ix_enrollments_due")
    with rt.session() as session:  # and the claim takes them in that order
        claimed = claim_due(session, now=NOW, limit=500)
    assert [e.id for e in claimed] == list(range(1, 501))


def test_a_backlog_planned_at_one_instant_is_handed_out_again_a_batch_at_a_time(
    rt: Runtime,
) -> None:
    populate(rt, DUE, now=NOW)  # ANALYZE runs here, while the outbox is still empty
    planned_at = NOW - REDISPATCH_AFTER - timedelta(minutes=5)
    with rt.session() as session:  # one message per patient, all planned at 09:00, unsent
        session.execute(
            text(
                "INSERT INTO outbox (patient_id, enrollment_id, occurrence, purpose, channel,"
                " body_text, status, planned_at, attempts)"
                " SELECT patient_id, id, 0, 'program',"
                " CASE WHEN id % 2 = 0 THEN 'sms' ELSE 'email' END, 'x', 'planned', :at, 0"
                " FROM enrollments ORDER BY id"
            ),
            {"at": planned_at},
        )
    for channel in Channel:
        query = redispatch_query(now=NOW, channel=channel, limit=500)
        with rt.session() as session, in_index_order(session):
            _assert_read_off(session, query, "ix_outbox_planned")
    with rt.session() as session:  # oldest first, then by id, one channel at a time
        sms = redispatchable(session, now=NOW, channel=Channel.SMS, limit=500)
        either = redispatchable(session, now=NOW, limit=500)
    assert list(sms) == list(range(2, 1001, 2))
    assert list(either) == list(range(1, 501))
