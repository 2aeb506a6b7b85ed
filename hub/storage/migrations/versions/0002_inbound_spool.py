"""inbound spool: items committed before acknowledgment, worked into the intake behind it

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "inbound_spool",
        sa.Column("id", _ID, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("dedupe_key", sa.String(length=1024), nullable=False),
        sa.Column("envelope", sa.JSON(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("message_id", _ID, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_spool")),
        sa.UniqueConstraint("channel", "dedupe_key", name="uq_inbound_spool_channel_dedupe_key"),
    )
    op.create_index("ix_inbound_spool_state_id", "inbound_spool", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_inbound_spool_state_id", table_name="inbound_spool")
    op.drop_table("inbound_spool")
