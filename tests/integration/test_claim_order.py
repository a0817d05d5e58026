"""The tick's claim reads a batch off ``ix_enrollments_due`` when everyone is due at once.

With the index on ``next_due_at`` alone, or with statistics taken before the send time filled
up, PostgreSQL sorted every due row for each batch of 500 (an on-disk sort at 50k due, ~100
ms per batch), so a burst's claims grew with its square. The plan is the product here: a
regression would pass every functional test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text, update

from bench.datagen import populate
from campaigns.claims import claim_due, due_query, in_index_order
from campaigns.models import Enrollment
from campaigns.runtime import Runtime

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DUE = 10_000


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


def test_a_batch_is_read_off_the_due_index_when_everyone_shares_a_due_time(rt: Runtime) -> None:
    populate(rt, DUE, now=NOW)
    with rt.session() as session:  # everyone at 09:00: one due time, thousands of rows
        session.execute(update(Enrollment).values(next_due_at=NOW - timedelta(minutes=1)))
    # no ANALYZE since: the statistics still say nothing is due yet, as after a bulk enrolment
    postgresql = rt.engine.dialect.name == "postgresql"
    query = due_query(now=NOW, limit=500, locking=postgresql)
    sql = str(query.compile(rt.engine, compile_kwargs={"literal_binds": True}))
    with rt.session() as session, in_index_order(session):
        if postgresql:
            plan = session.execute(text("EXPLAIN (FORMAT JSON) " + sql)).scalar_one()
            nodes = _nodes((plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"])
            assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort")]
            assert {n.get("Index Name") for n in nodes} >= {"ix_enrollments_due"}
        else:
            steps = [row[-1] for row in session.execute(text("EXPLAIN QUERY PLAN " + sql))]
            assert not [s for s in steps if "TEMP B-TREE" in s], steps
            assert [s for s in steps if "ix_enrollments_due" in s], steps
    with rt.session() as session:  # and the claim takes them in that order
        claimed = claim_due(session, now=NOW, limit=500)
    assert [e.id for e in claimed] == list(range(1, 501))
