"""SQLite statements in one trip to aiosqlite's thread each.

SQLAlchemy's aiosqlite adapter makes every statement three or four round trips between the
event loop and aiosqlite's thread: open a cursor, execute, fetch the rows, close the cursor.
Each trip is a queue hand-off, a thread wake-up and a wake-up of the loop: about 300 µs a
statement on a 2-core machine, against about 70 µs for one trip that does all four. The
intake, the outbox and every staff API read run a few statements each, so the trips added
up to a large share of the time the loop sat waiting.

`ONE_TRIP_DBAPI` is passed to `create_async_engine(module=...)`: connections it makes hand
out `OneTripCursor`s, which run the whole statement on aiosqlite's thread with the plain
sqlite3 connection and bring back the description, row count, last row id and rows together.
Errors, transactions and server-side cursors are the adapter's own, unchanged.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

_Outcome = tuple[Any, int, int | None, list[Any] | None]


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that holds no aiosqlite cursor: each execute is one trip (see module doc)."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:  # no trip to open a cursor
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass  # the rows are all fetched with the statement

    async def _async_soft_close(self) -> None:
        pass  # nothing stays open on aiosqlite's thread

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._trip(False, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._trip(True, operation, seq_of_parameters)

    async def _trip(self, many: bool, operation: Any, parameters: Any) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        raw = connection._conn  # aiosqlite's sqlite3 connection, used on its own thread only
        async with self._adapt_connection._execute_mutex:
            outcome = await connection._execute(_execute, raw, many, operation, parameters)
        self._description, self._rowcount, self._lastrowid, rows = outcome
        if rows is not None:
            self._rows = collections.deque(rows)


def _execute(raw: sqlite3.Connection, many: bool, operation: str, parameters: Any) -> _Outcome:
    """The whole statement, on aiosqlite's thread: cursor, execute, rows, close."""
    cursor = raw.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else None
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        adapted.__class__ = OneTripConnection  # same slots: only the cursor class differs
        return adapted


ONE_TRIP_DBAPI = OneTripDBAPI(aiosqlite, sqlite3)
