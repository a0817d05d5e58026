"""outbox index for the reply path's "which message does this answer" lookup

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 08:30:00

Without it the lookup combined the patient index with the status index, and on PostgreSQL
with stale statistics (autovacuum off, or before it runs) that read every sent row's entry:
20 ms per reply at 200k sent rows, 0.05 ms with this index (bench/HISTORY.md, B7).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REACHED = sa.text("status IN ('sent', 'delivered')")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_answered",
        "outbox",
        ["patient_id", "channel", "sent_at", "id"],
        postgresql_where=_REACHED,
        sqlite_where=_REACHED,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_answered", table_name="outbox")
