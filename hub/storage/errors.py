"""Which storage failures are the database's and which are the item's.

"The database is away" (connection refused or lost, timeout, disk full, locked, shutting
down) passes: the work is retried later and no attempt is counted against the item. Anything
else (a constraint, a value too long, an encoding the database refuses, any data error, a bug)
belongs to the item: it is counted, and an item that keeps failing is set aside, so it never
holds up the items behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3

from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# PostgreSQL SQLSTATE classes and codes that say nothing about the statement's data:
# 08 connection exception, 53 insufficient resources (disk full, out of memory, too many
# connections), 57P operator intervention (shutdown, cannot connect now), 58 system error (I/O),
# 40001/40P01 serialization failure and deadlock (retrying is the documented answer),
# 55P03 lock not available, 57014 statement timeout.
_PG_TRANSIENT_CLASSES = ("08", "53", "57P", "58")
_PG_TRANSIENT_CODES = frozenset({"40001", "40P01", "55P03", "57014"})

# SQLite primary result codes of the same kind: BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN,
# PROTOCOL, READONLY (a read-only or moved database file), INTERRUPT.
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 10, 13, 14, 15, 8, 9})


def is_transient(exc: BaseException) -> bool:
    """True when `exc` says the database is away, not that this item cannot be stored."""
    if isinstance(exc, DisconnectionError | PoolTimeout | ConnectionError | TimeoutError
                  | asyncio.TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return _driver_transient(exc.orig)
    if isinstance(exc, sqlite3.Error):
        return _driver_transient(exc)
    if isinstance(exc, OSError):
        return True  # the disk or the network, never a value
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_transient(cause)


def _driver_transient(orig: BaseException | None) -> bool:
    if orig is None:
        return False
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        if code is not None:
            return (code & 0xFF) in _SQLITE_TRANSIENT
        return isinstance(orig, sqlite3.OperationalError)
    if isinstance(orig, OSError | ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    state = _sqlstate(orig)
    if state is not None:
        return state in _PG_TRANSIENT_CODES or state.startswith(_PG_TRANSIENT_CLASSES)
    # asyncpg's own connection errors have no SQLSTATE of their own.
    return type(orig).__name__ in {"ConnectionDoesNotExistError", "InterfaceError",
                                   "InternalClientError", "ConnectionFailureError"}


def _sqlstate(orig: BaseException) -> str | None:
    """The SQLSTATE under SQLAlchemy's asyncpg adapter (`.sqlstate`, `.pgcode`, or the cause)."""
    for candidate in (orig, orig.__cause__):
        if candidate is None:
            continue
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str) and state:
            return state
    return None
