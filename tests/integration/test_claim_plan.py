"""The send claim reads its rows by primary key even when PostgreSQL's statistics still
describe an empty outbox (autovacuum off or not yet run after a large import)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.b3_send import make_due
from bench.common import BENCH_NOW
from bench.datagen import populate
from campaigns.outbox import _claim_statement
from campaigns.prefetch import execute_among
from campaigns.runtime import build_runtime
from campaigns.scheduler import tick
from tests.conftest import make_settings


def test_the_send_claim_uses_the_primary_key_with_stale_statistics(
    pg_url: str, tmp_path: Path
) -> None:
    rt = build_runtime(make_settings(tmp_path, pg_url))
    try:
        populate(rt, 20_000, now=BENCH_NOW)  # ends with ANALYZE, while the outbox is empty
        make_due(rt, 20_000, now=BENCH_NOW)
        planned = tick(rt, now=BENCH_NOW).planned
        assert len(planned) == 20_000

        def explain(*args: Any) -> tuple[str, Any]:
            statement, parameters = args[2], args[3]
            if statement.startswith("UPDATE outbox SET status"):
                return "EXPLAIN " + statement, parameters
            return statement, parameters

        event.listen(rt.engine, "before_cursor_execute", explain, retval=True)
        with rt.session() as session:
            # The statement ``outbox._claim`` runs, explained (its rows are the plan's lines).
            ids = planned[1000:1100]
            claim = execute_among(session, _claim_statement, ids, now=BENCH_NOW)
            plan = "\n".join(str(row[0]) for row in claim)
            session.rollback()
        event.remove(rt.engine, "before_cursor_execute", explain)
    finally:
        rt.engine.dispose()
    assert "outbox_pkey" in plan, plan
    assert not re.findall(r"ix_outbox_\w+", plan), plan
