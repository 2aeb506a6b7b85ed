"""queue mutes: a staff member's queues whose rule notifications they do not want

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 15:00:00

One new table (hub.staff_notify): one row per staff member and muted queue. Nothing existing is
touched, so the same statements run on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "queue_mutes",
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"],
                                name=op.f("fk_queue_mutes_staff_id_staff"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("staff_id", "queue", name=op.f("pk_queue_mutes")),
    )


def downgrade() -> None:
    op.drop_table("queue_mutes")
