"""hub.storage.onetrip: a SQLite statement is one trip to aiosqlite's thread, and behaves as the
adapter's own cursor did (rows, row counts, last row ids, errors, transactions).

SQLite only by nature: PostgreSQL's driver (asyncpg) has no such thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiosqlite
import pytest
from sqlalchemy import CursorResult, text
from sqlalchemy.exc import IntegrityError

from hub.storage.db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}")
    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    yield database
    await database.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every function sent to an aiosqlite thread, by name."""
    sent: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", type(fn).__name__))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return sent


async def test_a_select_is_one_trip_and_brings_its_rows(db: Database, trips: list[str]) -> None:
    async with db.read() as session:
        await session.execute(text("SELECT 1"))  # the read transaction's BEGIN is behind us
        trips.clear()
        rows = (await session.execute(text("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y'"))
                ).all()
    assert [tuple(r) for r in rows] == [(1, "x"), (2, "y")]
    assert trips.count("_execute") == 1  # the statement; then the read's rollback
    assert "cursor" not in trips and "fetchall" not in trips and "close" not in trips


async def test_writes_report_row_counts_and_ids_and_commit_or_roll_back(db: Database) -> None:
    async with db.transaction() as session:
        inserted = cast(CursorResult[Any],
                        await session.execute(text("INSERT INTO t (v) VALUES ('a')")))
        assert inserted.lastrowid == 1
        await session.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}])
        updated = cast(CursorResult[Any],
                       await session.execute(text("UPDATE t SET v = v || '!' WHERE id > 1")))
        assert updated.rowcount == 2
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('d')"))
            await session.execute(text("INSERT INTO t (v) VALUES ('a')"))  # not unique
    async with db.read() as session:
        values = (await session.scalars(text("SELECT v FROM t ORDER BY id"))).all()
    assert values == ["a", "b!", "c!"]  # 'd' went with its transaction


async def test_a_result_read_after_another_statement_keeps_its_own_rows(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO t (v) VALUES ('a'), ('b')"))
        first = await session.execute(text("SELECT v FROM t ORDER BY id"))
        second = await session.execute(text("SELECT count(*) FROM t"))
        assert second.scalar_one() == 2
        assert first.scalars().all() == ["a", "b"]
