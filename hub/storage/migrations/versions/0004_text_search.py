"""text search: trigram indexes for `q=` over subjects, message bodies and addresses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 10:00:00

`q=` finds a substring, case-insensitively, in a conversation's subject, any of its message
bodies or one of its contact's addresses. Without an index that is a scan of every message.

PostgreSQL: pg_trgm GIN indexes, which the planner uses for the very ILIKE the hub already
writes (`'%text%'`), so the query keeps its meaning.

SQLite: three external-content FTS5 tables with the `trigram` tokenizer (SQLite 3.34 or newer),
one per searched column, whose rowids are the source rows' ids: a quoted phrase MATCH is then a
case-insensitive substring match, as ILIKE was, for texts of three characters or more (shorter
ones keep the LIKE scan; see hub.search). External content: the text is stored once, in the
source table; triggers keep the index equal to it on every insert, delete and change of the
column, whoever writes (the ORM, Core, plain sqlite3 on the writer thread, a cascade).

A later batch migration on SQLite (render_as_batch) that recreates messages, conversations or
identities drops their triggers with the old table: it must create them again (`_triggers`) and
run the 'rebuild' command of the table's index.
"""

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (source table, searched column) -> the index is f"{table}_fts"
SEARCHED = (("conversations", "subject"), ("messages", "body"), ("identities", "address"))
PG_INDEXES = {table: f"ix_{table}_{column}_trgm" for table, column in SEARCHED}


# The SQL below is put together from the names in SEARCHED only (S608: no outside text).


def _triggers(table: str, column: str) -> list[str]:
    fts = f"{table}_fts"
    add = f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column});"  # noqa: S608
    remove = (f"INSERT INTO {fts}({fts}, rowid, {column}) "  # noqa: S608
              f"VALUES ('delete', old.id, old.{column});")
    return [
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN {add} END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN {remove} END",
        # only a change of the searched column touches the index (not a status update)
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table} "
        f"BEGIN {remove} {add} END",
    ]


def _upgrade_sqlite() -> None:
    if sqlite3.sqlite_version_info < (3, 34):
        return  # no trigram tokenizer: `q=` keeps scanning (hub.search looks for the tables)
    for table, column in SEARCHED:
        fts = f"{table}_fts"
        op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', "
                   f"content_rowid='id', tokenize='trigram')")
        for statement in _triggers(table, column):
            op.execute(statement)
        # index the rows there are already
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")  # noqa: S608


def _upgrade_postgresql() -> None:
    available = op.get_bind().execute(sa.text(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first()
    if available is None:
        return  # a server without contrib: `q=` keeps its ILIKE, unindexed
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for table, column in SEARCHED:
        op.execute(f"CREATE INDEX IF NOT EXISTS {PG_INDEXES[table]} ON {table} "
                   f"USING gin ({column} gin_trgm_ops)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _upgrade_sqlite()
    else:
        _upgrade_postgresql()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table, _column in SEARCHED:
            for kind in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{kind}")
            op.execute(f"DROP TABLE IF EXISTS {table}_fts")
    else:
        for name in PG_INDEXES.values():
            op.execute(f"DROP INDEX IF EXISTS {name}")
        # the extension stays: other objects may have come to use it
