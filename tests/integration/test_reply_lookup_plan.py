"""The reply path's "which message does this answer" lookup reads its own index.

It used to combine the patient index with the status index. On PostgreSQL with statistics
taken while nothing was sent yet (autovacuum off, or before it runs), the planner then read
every sent row's status entry for each reply: 20 ms per reply at 200k sent rows in B7.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, event, select, text

from campaigns.enums import Channel
from campaigns.models import UTCDateTime
from campaigns.reply_queries import _answered
from campaigns.runtime import Runtime
from tests.factories import make_patient

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
ROWS = 20_000
#: 20k planned rows over 20 patients, one in five by email (a recursive CTE: both databases).
_FILL = text(
    "INSERT INTO outbox (patient_id, occurrence, purpose, channel, body_text, status,"
    " planned_at, attempts)"
    " WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :rows)"
    " SELECT :first + (n % 20), n, 'program', CASE WHEN n % 5 = 0 THEN 'email' ELSE 'sms' END,"
    " 'x', 'planned', :at, 0 FROM s"
).bindparams(bindparam("at", type_=UTCDateTime()))


def _plan(conn: Connection, params: dict[str, Any]) -> str:
    """EXPLAIN of the statement exactly as the lookup sends it (SQL and parameters)."""
    sent: dict[str, Any] = {}

    def grab(*args: Any) -> None:
        sent.update(statement=args[2], parameters=args[3])

    event.listen(conn, "before_cursor_execute", grab)
    conn.execute(select(_answered.label("answered")), params)
    event.remove(conn, "before_cursor_execute", grab)
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    rows = conn.exec_driver_sql(prefix + sent["statement"], sent["parameters"]).all()
    return "\n".join(str(row[-1]) for row in rows)


def test_the_lookup_uses_its_index_with_statistics_of_an_unsent_outbox(rt: Runtime) -> None:
    patients = [make_patient(rt, now=NOW) for _ in range(20)]
    with rt.engine.begin() as conn:
        conn.execute(_FILL, {"first": min(patients), "at": NOW, "rows": ROWS})
    with rt.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")  # the statistics of an outbox where nothing is sent
    with rt.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox SET status = 'sent', sent_at = :at").bindparams(
                bindparam("at", type_=UTCDateTime())
            ),
            {"at": NOW},
        )
    with rt.engine.connect() as conn:
        plan = _plan(conn, {"patient_id": patients[3], "channel": Channel.SMS,
                            "now": NOW + timedelta(days=1)})  # fmt: skip
    assert "ix_outbox_answered" in plan, plan
    assert set(re.findall(r"ix_outbox_\w+", plan)) == {"ix_outbox_answered"}, plan
