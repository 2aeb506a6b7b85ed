"""Spool-shaped rows into SQLite on a plain sqlite3 connection, as one multi-row INSERT without
RETURNING: the spool's own table, and the arrivals file `hub serve` writes beside a work
process (hub.arrivals), share it.

Every sqlite3 call gives up the GIL and must win it back from the busy event loop, so the fewer
the better: one statement (atomic on its own), ids from `lastrowid` (a statement's new rowids
are consecutive), and a look-up only when a resend made the count fall short. Types are stored
as SQLAlchemy stores them (JSON text; naive UTC with microseconds).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any, Literal

Table = Literal["inbound_spool", "arrivals"]  # names only from here: never a caller's text
_INSERT = ("INSERT INTO {table} (channel, dedupe_key, envelope, payload, state, attempts,"
           " received_at) VALUES {rows} ON CONFLICT (channel, dedupe_key) DO NOTHING")
_ROW = "(?, ?, ?, ?, 'pending', 0, ?)"


def sqlite_time(when: datetime) -> str:
    """A time as SQLAlchemy stores it in SQLite: naive UTC with microseconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert_rows(conn: sqlite3.Connection, rows: list[dict[str, Any]],
                table: Table = "inbound_spool") -> list[tuple[int, bool]]:
    """(id, duplicate) per row; the first of a batch's copies is the stored one."""
    first: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        row["when"] = sqlite_time(row["received_at"])
        first.setdefault((row["channel"], row["dedupe_key"]), index)
    fresh = [rows[index] for index in first.values()]
    params = [value for row in fresh for value in (
        row["channel"], row["dedupe_key"], json.dumps(row["envelope"]), row["payload"],
        row["when"])]
    cursor = conn.execute(_INSERT.format(table=table, rows=", ".join([_ROW] * len(fresh))),
                          params)
    if cursor.rowcount == len(fresh):
        start = int(cursor.lastrowid or 0) - len(fresh) + 1
        ids = {key: (start + n, True) for n, key in enumerate(first)}
    else:
        ids = _stored(conn, fresh, table)
    return [(ids[key][0], not (ids[key][1] and first[key] == index))
            for index, key in enumerate((row["channel"], row["dedupe_key"]) for row in rows)]


def _stored(conn: sqlite3.Connection, fresh: list[dict[str, Any]],
            table: Table) -> dict[tuple[str, str], tuple[int, bool]]:
    """(id, inserted just now) per key: ours if the stored row has our arrival time."""
    found: dict[tuple[str, str], tuple[int, bool]] = {}
    for row in fresh:
        stored_id, when = conn.execute(
            f"SELECT id, received_at FROM {table} WHERE channel = ? AND dedupe_key = ?",  # noqa: S608
            (row["channel"], row["dedupe_key"])).fetchone()
        found[(row["channel"], row["dedupe_key"])] = (int(stored_id), when == row["when"])
    return found
