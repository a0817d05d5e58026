"""outbox dispatch lease: a planned row handed to a send task is not handed out again
before its lease runs out, and each channel has a bounded number handed out at once

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 22:40:00

Existing planned rows get no lease, so they are handed out again exactly as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from campaigns.models import UTCDateTime

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))
        batch.create_index("ix_outbox_status_lease", ["status", "lease_until"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_status_lease")
        batch.drop_column("lease_until")
