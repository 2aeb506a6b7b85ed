"""canned responses: texts staff insert into replies, shared or per queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 13:20:00

One new table (hub.canned): a name, the text with its placeholders, the queue it belongs to
(NULL: every queue) and who made it. Nothing existing is touched, so the same statements run
on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "canned_responses",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_canned_responses_name", "canned_responses", ["name"])
    op.create_index("ix_canned_responses_queue", "canned_responses", ["queue"])


def downgrade() -> None:
    op.drop_index("ix_canned_responses_queue", table_name="canned_responses")
    op.drop_index("ix_canned_responses_name", table_name="canned_responses")
    op.drop_table("canned_responses")
