"""Engines and sessions for SQLite (embedded) and PostgreSQL (scale-out), and migrations.

SQLite allows one writer at a time, so writes go through a one-connection engine that begins
with `BEGIN IMMEDIATE` (no late lock upgrade that could fail with "database is locked"), while
reads use their own pool. WAL with synchronous=FULL keeps committed messages across power loss,
which is what makes "acknowledge only what is committed" true.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from hub.storage.onetrip import ONE_TRIP_DBAPI

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
T = TypeVar("T")
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
                  "PRAGMA busy_timeout=10000")


class DatabaseUnavailable(Exception):
    """The database did not answer; callers turn this into 451/503 so the sender retries."""


def _sqlite_pragmas(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_connect(url: str) -> sqlite3.Connection:
    """A plain sqlite3 connection with the pragmas of the engines' connections."""
    conn = sqlite3.connect(make_url(url).database or ":memory:", isolation_level=None,
                           check_same_thread=False, timeout=10.0)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    return conn


def _ensure_sqlite_dir(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


class WriteLock:
    """SQLite's one writer, queued in-process: first come, first served, except that an
    urgent writer (the spool's insert that a sender's 250 waits for) goes before every other
    waiting one, so it waits at most for the transaction in progress."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        if self._held or self._urgent or self._others:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            (self._urgent if urgent else self._others).append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed over just as we were cancelled: pass it on
                elif waiter in (queue := self._urgent if urgent else self._others):
                    queue.remove(waiter)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        for queue in (self._urgent, self._others):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the lock passes straight to it: still held
                    return
        self._held = False


class Database:
    """Owns the engines; hands out read and write sessions."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _ensure_sqlite_dir(url)
            self.write_engine = create_async_engine(
                url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=120,
                module=ONE_TRIP_DBAPI,
            )
            _sqlite_pragmas(self.write_engine.sync_engine, immediate=True)
            self.read_engine = create_async_engine(url, echo=echo, pool_size=pool_size,
                                                   module=ONE_TRIP_DBAPI)
            _sqlite_pragmas(self.read_engine.sync_engine, immediate=False)
        else:
            # No JIT: the hub's statements are short, and JIT compiling one costs ~0.8 s.
            self.write_engine = create_async_engine(
                url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                connect_args={"server_settings": {"jit": "off"}},
            )
            self.read_engine = self.write_engine
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # One writer at a time on SQLite: queue in-process instead of spinning on busy_timeout.
        self._write_lock = WriteLock() if self.is_sqlite else None
        self._thread_connection: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed on normal exit, rolled back on an exception."""
        if self._write_lock is not None:
            async with (self._write_lock.hold(), self._write_sessions() as session,
                        session.begin()):
                yield session
        else:
            async with self._write_sessions() as session, session.begin():
                yield session

    @asynccontextmanager
    async def write_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core-level write transaction, for hot paths that need no ORM unit of work."""
        if self._write_lock is not None:
            async with self._write_lock.hold(), self.write_engine.begin() as conn:
                yield conn
        else:
            async with self.write_engine.begin() as conn:
                yield conn

    async def write_in_thread(self, work: Callable[[sqlite3.Connection], T], *,
                              single_statement: bool = False, urgent: bool = False) -> T:
        """SQLite only: run `work` on a plain sqlite3 connection, in one write transaction, on
        a writer thread of its own.

        aiosqlite makes every cursor call a round trip between the loop and its thread (nine
        for a one-statement transaction under SQLAlchemy); a hot path that needs neither the
        ORM nor SQL compilation does its whole transaction in one trip here. It takes the same
        in-process write lock as every other writer (before them if `urgent`). With
        `single_statement`, `work` writes
        with one statement, which SQLite makes atomic (and durable) on its own: no BEGIN/COMMIT.
        """
        assert self._write_lock is not None, "write_in_thread is for SQLite"
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")

        def transaction() -> T:
            if self._thread_connection is None:
                self._thread_connection = _sqlite_connect(self.url)
            conn = self._thread_connection
            if single_statement:
                return work(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        async with self._write_lock.hold(urgent=urgent):
            return await asyncio.get_running_loop().run_in_executor(self._thread, transaction)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session:
            yield session

    async def ping(self) -> bool:
        try:
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        if self._thread is not None:
            if self._thread_connection is not None:
                connection, self._thread_connection = self._thread_connection, None
                await asyncio.get_running_loop().run_in_executor(self._thread, connection.close)
            self._thread.shutdown(wait=True)
            self._thread = None
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Apply migrations (blocking: call from a thread or a command, not the event loop)."""
    from alembic import command

    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, url, revision)
