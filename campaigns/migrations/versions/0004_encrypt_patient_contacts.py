"""encrypt patient phone and email at rest, with keyed-hash lookup columns

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 16:50:00

Existing rows are encrypted in place with the configured keys (``CAMPAIGNS_DATA_KEYS`` /
``CAMPAIGNS_LOOKUP_KEY``), in chunks, inside the migration's transaction: either every row is
encrypted and the plaintext columns are gone, or nothing changed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from campaigns.field_crypto import active

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000


def _copy(select_sql: str, update_sql: str, convert: object) -> None:
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(sa.text(select_sql), {"last": last, "n": CHUNK}).all()
        if not rows:
            return
        bind.execute(sa.text(update_sql), [convert(*row) for row in rows])  # type: ignore[operator]
        last = rows[-1][0]


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("email_ciphertext", sa.Text(), nullable=True))
        batch.add_column(sa.Column("phone_ciphertext", sa.Text(), nullable=True))
        batch.add_column(sa.Column("email_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("phone_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("phone_last4", sa.String(length=4), nullable=True))
    keys = active()

    def encrypt(pid: int, phone: str | None, email: str | None) -> dict[str, object]:
        return {
            "pid": pid,
            "pc": keys.encrypt(phone) if phone else None,
            "ec": keys.encrypt(email) if email else None,
            "ph": keys.lookup_hash("phone", phone) if phone else None,
            "eh": keys.lookup_hash("email", email) if email else None,
            "l4": phone[-4:] if phone else None,
        }

    _copy(
        "SELECT id, phone_e164, email FROM patients WHERE id > :last ORDER BY id LIMIT :n",
        "UPDATE patients SET phone_ciphertext = :pc, email_ciphertext = :ec, phone_hash = :ph,"
        " email_hash = :eh, phone_last4 = :l4 WHERE id = :pid",
        encrypt,
    )
    with op.batch_alter_table("patients") as batch:
        batch.drop_index("ix_patients_phone")
        batch.drop_index("ix_patients_email")
        batch.drop_column("phone_e164")
        batch.drop_column("email")
        batch.create_index("ix_patients_phone_hash", ["phone_hash"], unique=False)
        batch.create_index("ix_patients_email_hash", ["email_hash"], unique=False)
        batch.create_index("ix_patients_phone_last4", ["phone_last4"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("phone_e164", sa.String(length=16), nullable=True))
    keys = active()

    def decrypt(pid: int, phone: str | None, email: str | None) -> dict[str, object]:
        return {
            "pid": pid,
            "p": keys.decrypt(phone) if phone else None,
            "e": keys.decrypt(email) if email else None,
        }

    _copy(
        "SELECT id, phone_ciphertext, email_ciphertext FROM patients WHERE id > :last"
        " ORDER BY id LIMIT :n",
        "UPDATE patients SET phone_e164 = :p, email = :e WHERE id = :pid",
        decrypt,
    )
    with op.batch_alter_table("patients") as batch:
        batch.drop_index("ix_patients_phone_last4")
        batch.drop_index("ix_patients_email_hash")
        batch.drop_index("ix_patients_phone_hash")
        for column in (
            "phone_last4",
            "phone_hash",
            "email_hash",
            "phone_ciphertext",
            "email_ciphertext",
        ):
            batch.drop_column(column)
        batch.create_index("ix_patients_phone", ["phone_e164"], unique=False)
        batch.create_index("ix_patients_email", ["email"], unique=False)
