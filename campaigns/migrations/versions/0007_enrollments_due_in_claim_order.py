"""the due index in the tick's claim order: (next_due_at, id)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 19:10:00

The tick claims ``ORDER BY next_due_at, id LIMIT 500``. On ``next_due_at`` alone PostgreSQL
could not read that order from the index, so every claim joined and sorted every due row:
when thousands of patients share a send time (everyone at 09:00) each batch of 500 cost
~100 ms at 50k due (an on-disk sort), and a burst's claims grew with its square. With the
id in the index a claim reads 500 entries in order: 1.3 ms (bench/HISTORY.md, seventh
session). SQLite already read the order from the old index (its entries end with the rowid,
which is ``id``), so this only changes PostgreSQL's plans.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE = sa.text("next_due_at IS NOT NULL")


def _due_index(*columns: str) -> None:
    op.drop_index("ix_enrollments_due", table_name="enrollments")
    op.create_index(
        "ix_enrollments_due",
        "enrollments",
        list(columns),
        postgresql_where=_DUE,
        sqlite_where=_DUE,
    )


def upgrade() -> None:
    _due_index("next_due_at", "id")


def downgrade() -> None:
    _due_index("next_due_at")
