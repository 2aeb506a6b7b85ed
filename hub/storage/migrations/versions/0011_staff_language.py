"""staff language and online-only assignment: the workspace's language each staff member
chose, and whether a queue's strategy deals to its online members only

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 16:00:00

One new nullable column on `staff` (hub.web.staff.i18n): NULL means `[hub] default_language`;
one on `queues` (hub.assignment), "all" for every existing row. Adding a column with a default
runs the same on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("staff", sa.Column("language", sa.String(length=8), nullable=True))
    op.add_column("queues", sa.Column("assign_to", sa.String(length=8), nullable=False,
                                      server_default="all"))


def downgrade() -> None:
    op.drop_column("queues", "assign_to")
    op.drop_column("staff", "language")
