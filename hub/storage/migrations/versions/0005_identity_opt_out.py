"""identity opt-out: a citizen who texted STOP (or blocked the bot) is not written to

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 11:00:00

`identities.opted_out` (false for every existing row) and when it last changed. Set by the
intake on an SMS STOP keyword (cleared on START) and by a send the provider refused as
unsubscribed (Twilio 21610, Telegram's "bot was blocked"); staff replies to an opted-out
address are refused before anything is queued.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE, never a batch (table copy) on SQLite: a copy of `identities` would drop the
# text-search triggers of 0004.


def upgrade() -> None:
    op.add_column("identities", sa.Column("opted_out", sa.Boolean(), nullable=False,
                                          server_default=sa.false()))
    op.add_column("identities", sa.Column("opted_out_at", sa.DateTime(timezone=True),
                                          nullable=True))


def downgrade() -> None:
    op.drop_column("identities", "opted_out_at")
    op.drop_column("identities", "opted_out")
