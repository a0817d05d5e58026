"""the planned-outbox index in the redispatch order: (status, planned_at, id)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 20:45:00

Each tick hands out again, per channel, the oldest planned rows whose send task was lost or
deferred: ``ORDER BY planned_at, id LIMIT n``. On ``(status, planned_at)`` PostgreSQL could
not read that order from the index, so with a backlog planned at one instant (everyone at
09:00, held back by a rate limit) every tick collected all of it and sorted it: ~20 ms per
channel per tick at 50k planned, against 0.5 ms for a batch of 500 read off this index
(bench/HISTORY.md, eighth session). SQLite already read the order from the old index (its
entries end with the rowid, which is ``id``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _planned_index(*columns: str) -> None:
    op.drop_index("ix_outbox_status_planned", table_name="outbox")
    op.create_index("ix_outbox_status_planned", "outbox", list(columns))


def upgrade() -> None:
    _planned_index("status", "planned_at", "id")


def downgrade() -> None:
    _planned_index("status", "planned_at")
