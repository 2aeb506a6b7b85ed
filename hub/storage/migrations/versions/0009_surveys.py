"""surveys: the satisfaction survey sent with a conversation's resolution notice

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:30:00

One new table (hub.survey): one row per conversation, with the survey's unguessable token, the
channel and time of the notice that carried it, and the answer (rating, comment, when and how
it came). Nothing existing is touched, so the same statements run on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("conversation_id", _ID, nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_via", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"],
                                name=op.f("fk_surveys_conversation_id_conversations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("conversation_id", name=op.f("uq_surveys_conversation_id")),
        sa.UniqueConstraint("token", name=op.f("uq_surveys_token")),
    )


def downgrade() -> None:
    op.drop_table("surveys")
