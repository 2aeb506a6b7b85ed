"""conversation filters: a tag table, indexes for assignee and spam

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 08:00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "conversation_tags",
        sa.Column("conversation_id", _ID, nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE",
                                name=op.f("fk_conversation_tags_conversation_id_conversations")),
        sa.PrimaryKeyConstraint("conversation_id", "tag", name=op.f("pk_conversation_tags")),
    )
    op.create_index("ix_conversation_tags_tag", "conversation_tags", ["tag", "conversation_id"])
    op.create_index("ix_conversations_assignee_last", "conversations",
                    ["assignee_id", "last_message_at"])
    op.create_index("ix_conversations_spam_last", "conversations", ["spam", "last_message_at"])
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, tags FROM conversations")).all()
    pairs = []
    for conversation_id, tags in rows:
        values = json.loads(tags) if isinstance(tags, str) else (tags or [])
        pairs += [{"c": conversation_id, "t": str(t)[:64]} for t in dict.fromkeys(values)]
    if pairs:
        connection.execute(sa.text("INSERT INTO conversation_tags (conversation_id, tag) "
                                   "VALUES (:c, :t)"), pairs)


def downgrade() -> None:
    op.drop_index("ix_conversations_spam_last", table_name="conversations")
    op.drop_index("ix_conversations_assignee_last", table_name="conversations")
    op.drop_index("ix_conversation_tags_tag", table_name="conversation_tags")
    op.drop_table("conversation_tags")
