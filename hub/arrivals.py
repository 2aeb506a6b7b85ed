"""SQLite's arrivals file: where `hub serve` commits what arrives while a work process works.

SQLite lets one connection write a file at a time. With a work process beside `hub serve`
(hub.workprocess), its intake transactions hold the main file's write lock for milliseconds on
end, and a sender's 250 would wait for them, polling. So the serving process commits each
arriving item to a small file of its own, `<database>-arrivals` (WAL, synchronous=FULL, as
durable as the main file), whose lock nobody else holds for longer than one DELETE; the spool
worker moves arrivals into the main file's spool (one transaction, deduplicated by the spool's
unique key) and then deletes them here. A crash between the two moves them again, and the key
makes that harmless, so an item is never lost and never spooled twice. PostgreSQL needs none of
this: its row locks let both processes write at once.

A resend is known here as long as the first copy waits here, and by a look-up in the main spool
(a read, which never waits for a writer under WAL) once it has moved.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from hub.storage.db import SQLITE_PRAGMAS
from hub.storage.spoolrows import insert_rows

MOVE_BATCH = 500
_SCHEMA = ("CREATE TABLE IF NOT EXISTS arrivals (id INTEGER PRIMARY KEY, channel TEXT NOT NULL,"
           " dedupe_key TEXT NOT NULL, envelope TEXT NOT NULL, payload BLOB, state TEXT NOT NULL,"
           " attempts INTEGER NOT NULL, received_at TEXT NOT NULL, UNIQUE (channel, dedupe_key))")

_MOVE = ("INSERT INTO inbound_spool (channel, dedupe_key, envelope, payload, state, attempts,"
         " received_at) VALUES {} ON CONFLICT (channel, dedupe_key) DO NOTHING")


def arrivals_path(database_url: str) -> Path | None:
    """The arrivals file beside a SQLite database (None for PostgreSQL or in memory)."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database)).expanduser().with_name(Path(str(url.database)).name
                                                         + "-arrivals")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    conn.execute(_SCHEMA)
    return conn


class Arrivals:
    """The serving side: `insert` runs on the spool's one writer thread."""

    def __init__(self, database_url: str) -> None:
        path = arrivals_path(database_url)
        assert path is not None, "the arrivals file is for a SQLite database on disk"
        self.path = path
        self.main = Path(str(make_url(database_url).database)).expanduser()
        self._conn: sqlite3.Connection | None = None
        self._main: sqlite3.Connection | None = None

    def insert(self, rows: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        """(id, duplicate) per row, as the spool's own insert answers; one statement."""
        if self._conn is None:
            self._conn = _connect(self.path)
            self._main = sqlite3.connect(f"file:{self.main}?mode=ro", uri=True,
                                         check_same_thread=False, timeout=10.0)
        assert self._main is not None
        moved: dict[tuple[str, str], int] = {}
        for key in {(row["channel"], row["dedupe_key"]) for row in rows}:
            found = self._main.execute(
                "SELECT id FROM inbound_spool WHERE channel = ? AND dedupe_key = ?", key).fetchone()
            if found is not None:
                moved[key] = int(found[0])
        fresh = [row for row in rows if (row["channel"], row["dedupe_key"]) not in moved]
        stored = iter(insert_rows(self._conn, fresh, "arrivals") if fresh else [])
        return [(moved[key], True) if key in moved else next(stored)
                for key in ((row["channel"], row["dedupe_key"]) for row in rows)]

    def close(self) -> None:
        for conn in (self._conn, self._main):
            if conn is not None:
                conn.close()
        self._conn = self._main = None


class ArrivalsMover:
    """The working side: moves what has arrived into the main spool."""

    def __init__(self, database_url: str) -> None:
        self.path = arrivals_path(database_url)
        self._conn: sqlite3.Connection | None = None

    def waiting(self) -> bool:
        return self.path is not None and self.path.exists()

    def move(self, main: sqlite3.Connection) -> int:
        """Copy up to MOVE_BATCH arrivals into `main`'s spool, inside the caller's transaction
        on it; the id of the last one moved (0: none). `forget(that id)` once committed."""
        assert self.path is not None
        if self._conn is None:
            self._conn = _connect(self.path)
        rows = self._conn.execute(
            "SELECT id, channel, dedupe_key, envelope, payload, received_at FROM arrivals "
            "ORDER BY id LIMIT ?", (MOVE_BATCH,)).fetchall()
        if not rows:
            return 0
        main.execute(_MOVE.format(", ".join(["(?, ?, ?, ?, 'pending', 0, ?)"] * len(rows))),
                     [value for row in rows for value in row[1:]])
        return int(rows[-1][0])

    def forget(self, up_to: int) -> None:
        """After the move's commit: what moved is gone from here."""
        if self._conn is not None:
            self._conn.execute("DELETE FROM arrivals WHERE id <= ?", (up_to,))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
