"""outbox status indexes hold only rows still waiting: planned, sending, failed or unknown

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 10:00:00

``(status, planned_at, id)`` and ``(status, lease_until)`` held every row, and nearly every row
ends sent or delivered, which nothing looks up by status. Each message paid for entries in
both at every status change, and the indexes grew with the whole history. Partial indexes
on the statuses the queries ask for leave a sent row in none of them. ``lease_until`` is no
longer indexed (the in-flight count reads the planned rows), so a lease alone can be a HOT
update on PostgreSQL. Failed and unknown rows, which staff look for per patient, get an
index of their own instead of a read of the patient's history. At 10k patients x 42 days
(``python -m bench.staff_history``): the "needs attention" list 236 -> 12 ms on SQLite and
41 -> 19 ms on PostgreSQL, the outbox's indexes there 79 -> 60 MB (bench/HISTORY.md,
thirteenth session).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTIAL = {
    "ix_outbox_planned": (["planned_at", "id"], "status = 'planned'"),
    "ix_outbox_sending": (["sending_at"], "status = 'sending'"),
    "ix_outbox_unsettled": (["patient_id"], "status IN ('failed', 'unknown')"),
}
_FULL = {
    "ix_outbox_status_planned": ["status", "planned_at", "id"],
    "ix_outbox_status_lease": ["status", "lease_until"],
}


def upgrade() -> None:
    for name in _FULL:
        op.drop_index(name, table_name="outbox")
    for name, (columns, where) in _PARTIAL.items():
        predicate = sa.text(where)
        op.create_index(
            name, "outbox", columns, postgresql_where=predicate, sqlite_where=predicate
        )


def downgrade() -> None:
    for name in _PARTIAL:
        op.drop_index(name, table_name="outbox")
    for name, columns in _FULL.items():
        op.create_index(name, "outbox", columns)
