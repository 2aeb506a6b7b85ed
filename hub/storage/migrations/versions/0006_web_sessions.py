"""web sessions: the staff workspace's sign-ins, and wrong passwords counted for the lockout

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 13:30:00

`web_sessions` holds one row per signed-in browser (the SHA-256 of the cookie's token, the
CSRF token, when it ends); deleting the row ends the session. `login_failures` counts wrong
passwords per email since the last good login. Two new tables: nothing existing is copied, so
the same statements run on SQLite and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("staff_id", _ID, nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["staff_id"], ["staff.id"], ondelete="CASCADE",
                                name=op.f("fk_web_sessions_staff_id_staff")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    op.create_index("ix_web_sessions_staff_id", "web_sessions", ["staff_id"])
    op.create_table(
        "login_failures",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_login_failures")),
    )


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_index("ix_web_sessions_staff_id", table_name="web_sessions")
    op.drop_table("web_sessions")
