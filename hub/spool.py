"""The inbound spool: what a channel received, committed before the channel acknowledges it,
and worked into the intake right behind that acknowledgment.

A sender's 250 means "it is on our disk", which costs one INSERT shared by every item that
arrived meanwhile (one commit for a whole batch, also on SQLite). Parsing, threading, routing
and the acknowledgment (milliseconds of work per message) happen afterwards, in arrival order.
New arrivals go first: the spool is worked once intake has been quiet for `quiet`, and in any
case once items have waited `max_delay` (a quarter second), in small batches while arrivals go
on; so a burst is taken at wire speed and a steady stream is worked within a second. Past
`max_backlog` unworked items, `put` refuses (the channel answers "try later").

Nothing acknowledged is lost and nothing is stored twice: an item stays `pending` until the
intake committed its message; a crash in between means it is worked again at start, and the
intake's own dedupe (unique provider id) turns the second run into a no-op. An item that keeps
failing is set aside as `failed` (payload kept) after a few attempts and never holds up the
items behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import pickle
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import Table, bindparam, delete, func, make_url, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import metrics
from hub.adapters.base import Busy, FetchLater, Unavailable
from hub.arrivals import Arrivals, ArrivalsMover
from hub.intake import IntakeUnavailable
from hub.model import InboundMessage, SpoolItem, SpoolReceipt, utcnow
from hub.parsepool import ParsePool, ParseTimeout
from hub.routing import language
from hub.storage.bounded import clean_json, column_limit, fit_key
from hub.storage.db import Database, DatabaseUnavailable
from hub.storage.errors import is_transient
from hub.storage.spoolrows import insert_rows as _insert_rows_sqlite
from hub.storage.tables import SpoolEntry

log = logging.getLogger(__name__)

T = TypeVar("T")
Parser = Callable[[bytes, Mapping[str, Any], datetime], InboundMessage]
"""(payload, envelope, received_at) -> the normalised message; must not raise for bad input."""


SPOOL = cast(Table, SpoolEntry.__table__)
MAX_KEY_CHARS = column_limit(SPOOL.c.dedupe_key)
MAX_ATTEMPTS = 5
# A part the provider keeps (FetchLater): tried again for about five hours, at most hourly.
FETCH_ATTEMPTS = 15
MAX_RETRY_SECONDS = 3600
BATCH_BYTES = 32 * 1024 * 1024  # payloads held in memory at once (one item may exceed it)
# Items read at once when nothing is arriving. A batch's first chunks are stored in small
# transactions, and the intake only reaches whole ones (Intake.max_batch) once parsing is
# ahead: with 128 a batch, five transactions of 8 to 40; with 1,024, a dozen reaching 128
# (bench/ingest.py: 1.84 -> 1.35 ms of work process CPU per mail).
BATCH_ITEMS = 1024
ARRIVING_ITEMS = 8  # items read at once while arrivals go on
PAYLOADS_AT_ONCE = 500  # ids bound in one statement (SQLite before 3.32 takes 999 at most)
STRIKES = 3
PARSE_CHUNK = 32  # parsed while the chunk before it is stored
PARSE_FIRST = 8  # nothing is stored while the first chunk is parsed: it is small (8, 16, 32...)
PG_WRITERS = 4  # spool batches committed at once on PostgreSQL
POLL_SECONDS = 5.0  # items retried or spooled by another process are seen this soon


class SpoolFull(Busy):
    """More unworked items than `max_backlog`: the channel must make the sender retry later."""


class SpoolUnavailable(Unavailable):
    """The database did not take the items: the channel must make the sender retry later."""


def spool_key(key: str) -> str:
    """The key as the column stores it (cleaned; hashed when longer than the column), for the
    writer thread that bypasses the column types."""
    return fit_key(key, MAX_KEY_CHARS)


class Spool:
    """The write side: `put` returns once the item is committed (or known already)."""

    def __init__(self, db: Database, *, max_backlog: int = 10_000, max_batch: int = 128) -> None:
        self.db = db
        self.max_backlog = max_backlog
        self._max_batch = max_batch
        self._waiting: list[tuple[SpoolItem, asyncio.Future[SpoolReceipt]]] = []
        self._writing = 0  # writer tasks at work; one leaves as it finds nothing waiting
        self._tasks: set[asyncio.Task[None]] = set()
        self.backlog = 0  # pending items; SpoolWorker.start() counts what a crash left behind
        self.last_put = 0.0  # time.monotonic() of the latest put
        self.added = 0  # items this process stored, running count (hub.workprocess)
        self.on_new: Callable[[], object] | None = None
        self._pg = None if db.is_sqlite else _PgWriters(db.url)
        # SQLite has one writer; PostgreSQL commits several batches at once (group commit).
        self._max_writers = 1 if db.is_sqlite else PG_WRITERS
        # Set by `hub serve` when a work process writes the main SQLite file (hub.arrivals).
        self.arrivals: Arrivals | None = None
        self._arrivals_thread: ThreadPoolExecutor | None = None

    async def put(self, item: SpoolItem) -> SpoolReceipt:
        if self.backlog >= self.max_backlog:
            raise SpoolFull(f"{self.backlog} items waiting")
        self.last_put = time.monotonic()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SpoolReceipt] = loop.create_future()
        self._waiting.append((item, future))
        if self._writing < self._max_writers:
            self._writing += 1
            writer = loop.create_task(self._write_waiting())
            self._tasks.add(writer)
            writer.add_done_callback(self._tasks.discard)
        return await future

    async def _write_waiting(self) -> None:
        try:
            await self._write_batches()
        finally:
            self._writing -= 1  # no await since the last look at the queue: no put is missed

    async def _write_batches(self) -> None:
        while self._waiting:
            batch = self._waiting[:self._max_batch]
            del self._waiting[:self._max_batch]
            try:
                _settle(batch, await self._insert([item for item, _ in batch]))
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch, exc)
                    continue
                # One unstorable item must not cost the others: each goes again on its own.
                for item, future in batch:
                    try:
                        _settle([(item, future)], await self._insert([item]))
                    except Exception as alone:
                        _settle([(item, future)], alone)

    async def _insert(self, items: Sequence[SpoolItem]) -> list[SpoolReceipt]:
        rows = [{"channel": item.channel, "dedupe_key": spool_key(item.dedupe_key),
                 "envelope": clean_json(item.envelope), "payload": item.payload,
                 "state": "pending",
                 "attempts": 0, "received_at": item.received_at} for item in items]
        try:
            if self._pg is not None:  # one statement, on connections of its own
                ids = await self._pg.insert(rows)
            elif self.arrivals is not None:
                ids = await self._insert_arrivals(self.arrivals, rows)
            else:  # the whole transaction in one trip to SQLite's writer thread
                ids = await self.db.write_in_thread(
                    lambda conn: _insert_rows_sqlite(conn, rows), single_statement=True,
                    urgent=True)
        except (DBAPIError, sqlite3.Error, OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:
            # One exception for "not stored", whichever driver said so: the sender keeps the
            # item and retries (the values were cleaned and fitted, so it is not the item's).
            raise SpoolUnavailable(type(exc).__name__) from exc
        receipts = [SpoolReceipt(spool_id, duplicate=duplicate) for spool_id, duplicate in ids]
        added = sum(not r.duplicate for r in receipts)
        if added:
            self.added += added
            self.backlog += added
            metrics.SPOOL_PENDING.set(self.backlog)
            if self.on_new is not None:
                self.on_new()
        return receipts

    async def _insert_arrivals(self, arrivals: Arrivals,
                               rows: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        if self._arrivals_thread is None:
            self._arrivals_thread = ThreadPoolExecutor(1, thread_name_prefix="spool-arrivals")
        return await asyncio.get_running_loop().run_in_executor(
            self._arrivals_thread, arrivals.insert, rows)

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._arrivals_thread is not None:
            if self.arrivals is not None:
                await asyncio.get_running_loop().run_in_executor(self._arrivals_thread,
                                                                 self.arrivals.close)
            self._arrivals_thread.shutdown()
            self._arrivals_thread = None


class _PgWriters:
    """PostgreSQL: the spool's inserts on a few asyncpg connections of their own, a batch in one
    statement: no pool checkout, pre-ping or SQL compiling on the way to a sender's 250. A
    connection that failed is dropped and made again for the next batch."""

    SQL = ("INSERT INTO inbound_spool (channel, dedupe_key, envelope, payload, state, attempts,"
           " received_at) SELECT c, k, e, p, 'pending', 0, r FROM unnest($1::text[],"
           " $2::text[], $3::json[], $4::bytea[], $5::timestamptz[]) AS t(c, k, e, p, r)"
           " ON CONFLICT (channel, dedupe_key) DO NOTHING RETURNING id, channel, dedupe_key")
    KNOWN = ("SELECT id, channel, dedupe_key FROM inbound_spool WHERE (channel, dedupe_key) IN"
             " (SELECT * FROM unnest($1::text[], $2::text[]))")

    def __init__(self, url: str) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._idle: list[asyncpg.Connection] = []

    async def insert(self, rows: list[dict[str, Any]]) -> list[tuple[int, bool]]:
        conn = self._idle.pop() if self._idle else await asyncpg.connect(self.dsn, timeout=10)
        keys = [(row["channel"], row["dedupe_key"]) for row in rows]
        try:
            # In a transaction of its own, not as a statement that commits itself: a process
            # killed while its INSERT waits for a lock must leave nothing behind.
            async with conn.transaction():
                new = {(c, k): i for i, c, k in await conn.fetch(
                    self.SQL, [c for c, _ in keys], [k for _, k in keys],
                    [json.dumps(row["envelope"]) for row in rows],
                    [row["payload"] for row in rows], [row["received_at"] for row in rows])}
            known: dict[tuple[str, str], int] = {}
            if len(new) < len(rows):
                rest = [key for key in keys if key not in new]
                known = {(c, k): i for i, c, k in await conn.fetch(
                    self.KNOWN, [c for c, _ in rest], [k for _, k in rest])}
        except BaseException:
            await _close_quietly(conn)
            raise
        self._idle.append(conn)
        ids: list[tuple[int, bool]] = []
        for key in keys:
            if key in new:  # the first of a batch's copies is the stored one
                known[key] = new.pop(key)
                ids.append((known[key], False))
            else:
                ids.append((known.get(key, 0), True))
        return ids

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close_quietly(conn)


async def _close_quietly(conn: asyncpg.Connection) -> None:
    if not conn.is_closed():
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)


def _settle(batch: Sequence[tuple[SpoolItem, asyncio.Future[SpoolReceipt]]],
            outcome: Sequence[SpoolReceipt] | Exception) -> None:
    for index, (_, future) in enumerate(batch):
        if future.done():
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome[index])


@dataclass(frozen=True, slots=True)
class WorkPolicy:
    """When the worker may take the loop from new arrivals.

    A burst is taken first: the worker starts once arrivals have been quiet for `quiet`. If
    they go on for longer than `max_delay`, it works anyway, but while arrivals continue it
    keeps to `share` of the time (after a batch that took t, it pauses t*(1-share)/share), so
    the 250s go on too; a backlog that still grows meets `max_backlog` (451, retry later).
    """

    quiet: float = 0.05
    max_delay: float = 0.25
    share: float = 0.5

    def wait_before_work(self, now: float, last_put: float, waiting_since: float) -> float:
        """Seconds to hold off still (0: work now)."""
        until_quiet = last_put + self.quiet - now
        until_overdue = waiting_since + self.max_delay - now
        return max(0.0, min(until_quiet, until_overdue))

    def batch_size(self, full: int, now: float, last_put: float) -> int:
        """While arrivals go on, small batches: on SQLite a batch holds the write lock that
        the next 250's spool insert waits for; when it is quiet, whole ones."""
        return full if now - last_put >= self.quiet else min(full, ARRIVING_ITEMS)

    def pause_after(self, busy: float, now: float, last_put: float) -> float:
        """Seconds to pause after a batch that took `busy` (0 when nothing is arriving)."""
        if now - last_put >= self.quiet:
            return 0.0
        return busy * (1 - self.share) / self.share


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    channel: str
    envelope: dict[str, Any]
    received_at: datetime
    attempts: int


class SpoolWorker:
    """Works pending items into the intake, oldest first, one task on the hub's loop."""

    def __init__(self, spool: Spool, intake: Any, parsers: Mapping[str, Parser], *,
                 policy: WorkPolicy = WorkPolicy(), batch: int = BATCH_ITEMS,
                 pool: ParsePool | None = None,
                 language_codes: Callable[[], frozenset[str]] = frozenset) -> None:
        self.spool = spool
        self.intake = intake
        self.parsers = dict(parsers)
        self.language_codes = language_codes  # the live rule set's (hub.routing.language)
        self.policy = policy
        self.pool = pool
        if pool is not None and pool.processes > 0:
            for channel, parser in self.parsers.items():
                _check_picklable(channel, parser)
        self._batch = batch
        self._strikes: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # clear while a backlog is being worked
        self._idle.set()
        self._working = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._warmed = False
        self._warming: set[asyncio.Task[list[object]]] = set()
        self._retry_delay = 0.0
        self._mover = ArrivalsMover(spool.db.url) if spool.db.is_sqlite else None
        spool.on_new = self._wake.set

    async def start(self) -> None:
        await self._count_pending()
        self._wake.set()  # whatever a crash or a stop left pending
        self._task = asyncio.get_running_loop().create_task(self._run())
        if not self.spool.backlog:  # else the backlog's first parse readies the process
            self.warm()
        if codes := self.language_codes():
            self._warm_up([(language.warm, (codes,))])

    def warm(self) -> None:
        """Starts the parse process and the parsers' imports now, without waiting for them
        (they take a second): a mail that comes meanwhile queues behind them in that process
        instead of paying for them alone. `start` adds lingua's models (most of another second)
        when the live rules ask for a language."""
        if not self._warmed:
            self._warmed = True
            self._warm_up([(parse, (b"", {}, utcnow())) for parse in self.parsers.values()])

    def _warm_up(self, calls: Sequence[tuple[Callable[..., object], tuple[object, ...]]]) -> None:
        if self.pool is None or self.pool.processes <= 0:
            return
        # run_each returns each call's exception instead of raising it: nothing to handle here.
        task = asyncio.get_running_loop().create_task(self.pool.run_each(calls))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _count_pending(self) -> None:
        with contextlib.suppress(Exception):  # the database away: the old count stands
            async with self.spool.db.read() as session:
                self.spool.backlog = int(await session.scalar(
                    select(func.count()).select_from(SPOOL)
                    .where(SPOOL.c.state == "pending")) or 0)
        metrics.SPOOL_PENDING.set(self.spool.backlog)

    async def stop(self) -> None:
        tasks = [*self._warming, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self._mover is not None:
            self._mover.close()

    async def drain(self) -> int:
        """Work every item that is due now, without giving way; return how many were worked."""
        total = 0
        while (worked := await self.work_batch()) > 0:
            total += worked
        return total

    async def _run(self) -> None:
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("spool worker failed; starting over in a second")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _run_once(self) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that lands as the event fires, and stop() would wait forever.
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                # Look anyway: another process may have spooled or retried an item.
                await self._count_pending()
            self._wake.clear()
            self._idle.clear()
            try:
                await self._work_backlog()
            finally:
                self._idle.set()
            await self._sleep_until_next_retry()

    async def _work_backlog(self) -> None:
        waiting_since = time.monotonic()
        while True:
            await self._give_way(waiting_since)
            started = time.monotonic()
            worked = await self.work_batch()
            now = time.monotonic()
            await asyncio.sleep(self.policy.pause_after(now - started, now, self.spool.last_put))
            if worked < 0:  # the database is away: back off, then try again
                self._retry_delay = min(30.0, max(0.5, self._retry_delay * 2))
                await asyncio.sleep(self._retry_delay)
                continue
            self._retry_delay = 0.0
            if worked == 0:
                return

    async def idle(self, within: float) -> None:
        """Returns when no backlog is being worked here (at once if none is), or after
        `within` seconds at most."""
        if self._idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._idle.wait()

    async def _give_way(self, waiting_since: float) -> None:
        # A deadline that moves with every arrival, not an event: sleeping on it is the point.
        while True:
            hold = self.policy.wait_before_work(time.monotonic(), self.spool.last_put,
                                                waiting_since)
            if hold <= 0:
                return
            await asyncio.sleep(hold)

    async def _sleep_until_next_retry(self) -> None:
        async with self.spool.db.read() as session:
            earliest = await session.scalar(select(func.min(SPOOL.c.next_attempt_at)).where(
                SPOOL.c.state == "pending", SPOOL.c.next_attempt_at.is_not(None)))
        if earliest is not None:
            delay = max(0.0, (earliest - utcnow()).total_seconds())
            asyncio.get_running_loop().call_later(delay + 0.01, self._wake.set)

    async def work_batch(self) -> int:
        """Work up to one batch of due items: how many were settled, -1 if the database failed."""
        async with self._working:
            try:
                await self._move_arrivals()
                async with self._claiming() as claim:
                    return await self._work(claim)
            except Exception as exc:
                # Not recorded, so worked again later: the intake's dedupe makes that harmless.
                log.warning("spool: could not record worked items: %s", type(exc).__name__)
                return -1

    async def _move_arrivals(self) -> None:
        """What `hub serve` committed to SQLite's arrivals file goes into the spool first."""
        mover = self._mover
        if mover is None or not mover.waiting():
            return
        while up_to := await self.spool.db.write_in_thread(mover.move):
            await asyncio.to_thread(mover.forget, up_to)

    @contextlib.asynccontextmanager
    async def _claiming(self) -> AsyncIterator[AsyncConnection | None]:
        """Several `hub serve` may work one spool on PostgreSQL: a batch's rows stay locked
        (FOR UPDATE SKIP LOCKED) in this transaction until their outcomes are recorded in it,
        so each item is worked by one process; one that dies lets go of its rows with its
        connection, and no lease has to run out. SQLite is worked by one process: None."""
        if self.spool.db.is_sqlite:
            yield None
            return
        async with self.spool.db.write_engine.begin() as conn:
            yield conn

    async def _work(self, claim: AsyncConnection | None) -> int:
        try:
            due = await self._due(claim)
        except Exception as exc:
            log.warning("spool: could not read pending items: %s", type(exc).__name__)
            return -1
        outcomes = await self._parse_and_store(due)
        done: list[tuple[int, int]] = []
        failed: list[tuple[_Due, Exception]] = []
        unavailable: list[tuple[_Due, Exception]] = []
        for (item, _), outcome in zip(due, outcomes, strict=True):
            if not isinstance(outcome, Exception):
                self._strikes.pop(item.id, None)
                done.append((item.id, int(outcome.message_id)))
            elif _is_unavailable(outcome):
                unavailable.append((item, outcome))  # not the item's fault: not counted
            else:
                failed.append((item, outcome))
        if unavailable:
            up = bool(done or failed) or await self.spool.db.ping()
            failed += self._struck_out(unavailable) if up else []
            if not done and not failed:
                return -1  # the database is away (or may be): back off, nothing counted
        try:
            await self._settle(done, failed, claim)
        except Exception as exc:
            # Not recorded, so worked again later: the intake's dedupe makes that harmless.
            log.warning("spool: could not record worked items: %s", type(exc).__name__)
            return -1
        return len(done) + len(failed)

    async def _parse_and_store(self, due: list[tuple[_Due, bytes]]) -> list[Any]:
        """Each item's `Accepted` or exception. The batch is parsed in chunks, back to back in
        the parse process (on the other core), and each parsed chunk goes to the intake as soon
        as fewer than a transaction's worth wait there, in order. The intake stores what waits
        in one transaction, so while it stores the first chunks the next ones gather into
        larger ones: most of a small transaction's cost is fixed (its look-ups, its
        statements), not per message."""
        storing: list[tuple[list[Exception | None], asyncio.Task[list[Any]]]] = []
        try:
            for chunk in _chunks(due):
                parsed = await self._parse_all(chunk)
                messages = [msg for msg in parsed if not isinstance(msg, Exception)]
                failed = [msg if isinstance(msg, Exception) else None for msg in parsed]
                await self.intake.room()  # a transaction's worth ahead, no more
                storing.append((failed, asyncio.create_task(self.intake.accept_many(messages))))
            outcomes: list[Any] = []
            for failed, accepting in storing:
                accepted = iter(await accepting)
                outcomes += [next(accepted) if exc is None else exc for exc in failed]
            return outcomes
        finally:
            # Stopped half-way: what the intake has queued is stored all the same, unread
            # here (so worked again later, and found stored by the intake's dedupe).
            for _, accepting in storing:
                accepting.cancel()

    def _struck_out(self, unavailable: list[tuple[_Due, Exception]]) -> list[tuple[_Due, Exception]]:
        """Items that failed as if the database were away while it answered, STRIKES times in a
        row: they may be the cause, so from now on they count, and cannot hold up the rest."""
        out = []
        for item, exc in unavailable:
            self._strikes[item.id] = self._strikes.get(item.id, 0) + 1
            if self._strikes[item.id] >= STRIKES:
                del self._strikes[item.id]
                out.append((item, exc))
        return out

    async def _due(self, claim: AsyncConnection | None) -> list[tuple[_Due, bytes]]:
        """The oldest due items with their payloads, as many as fit the batch's byte budget;
        with a `claim`, only those no other process holds, locked until it ends."""
        if claim is not None:
            return await self._due_on(claim, lock=True)
        async with self.spool.db.read() as session:
            return await self._due_on(await session.connection(), lock=False)

    async def _due_on(self, conn: AsyncConnection, *, lock: bool) -> list[tuple[_Due, bytes]]:
        now = utcnow()
        due = (select(SPOOL.c.id, SPOOL.c.channel, SPOOL.c.envelope, SPOOL.c.received_at,
                      SPOOL.c.attempts, func.length(SPOOL.c.payload))
               .where(SPOOL.c.state == "pending", SPOOL.c.channel.in_(list(self.parsers)),
                      (SPOOL.c.next_attempt_at.is_(None)) | (SPOOL.c.next_attempt_at <= now))
               .order_by(SPOOL.c.id)
               .limit(self.policy.batch_size(self._batch, time.monotonic(),
                                             self.spool.last_put)))
        if lock:  # rows another process holds are passed over, not waited for
            due = due.with_for_update(skip_locked=True)
        chosen: list[_Due] = []
        budget = BATCH_BYTES
        for *fields, size in (await conn.execute(due)).all():
            if chosen and (size or 0) > budget:
                break
            chosen.append(_Due(*fields))
            budget -= size or 0
        if not chosen:
            return []
        payloads: dict[int, bytes] = {}
        ids = [item.id for item in chosen]
        for start in range(0, len(ids), PAYLOADS_AT_ONCE):
            payloads.update((await conn.execute(
                select(SPOOL.c.id, SPOOL.c.payload)
                .where(SPOOL.c.id.in_(ids[start:start + PAYLOADS_AT_ONCE])))).all())
        return [(item, payloads.get(item.id) or b"") for item in chosen]

    async def _parse_all(self, due: list[tuple[_Due, bytes]]) -> list[InboundMessage | Exception]:
        """Off the loop, the whole batch in one trip to a parse process, each within the
        pool's budget; past it or on a parser crash, the payload is kept raw and flagged where
        the parser can do that, else the item fails this attempt."""
        codes = self.language_codes()
        calls = [(language.parsed_with_guess,
                  (self.parsers[item.channel], codes, payload, item.envelope, item.received_at))
                 for item, payload in due]
        if self.pool is not None:
            results = await self.pool.run_each(calls)
        else:
            results = [await _in_thread(parse, args) for parse, args in calls]
        return [result if not isinstance(result, Exception) or isinstance(result, FetchLater)
                else await self._kept_raw(item, payload, result)
                for (item, payload), result in zip(due, results, strict=True)]

    async def _kept_raw(self, item: _Due, payload: bytes,
                        error: Exception) -> InboundMessage | Exception:
        parse = self.parsers[item.channel]
        reason = "parse_timeout" if isinstance(error, ParseTimeout) else "parse_error"
        log.warning("spool item %s (%s): %s (%s); keeping it raw", item.id, item.channel,
                    reason, type(error).__name__)
        metrics.INBOUND_MALFORMED.labels(item.channel, reason).inc()
        raw_only = getattr(parse, "raw_only", None)
        if raw_only is None:
            return error
        try:
            return cast(InboundMessage, await asyncio.to_thread(
                raw_only, payload, item.envelope, item.received_at, reason))
        except Exception as exc:
            return exc

    async def _settle(self, done: list[tuple[int, int]], failed: list[tuple[_Due, Exception]],
                      claim: AsyncConnection | None) -> None:
        if not done and not failed:
            return
        if claim is not None:
            await self._record(claim, done, failed)
        else:
            async with self.spool.db.write_connection() as conn:
                await self._record(conn, done, failed)
        self._count_out(done, failed)

    async def _record(self, conn: AsyncConnection, done: list[tuple[int, int]],
                      failed: list[tuple[_Due, Exception]]) -> None:
        now = utcnow()
        if done:
            await conn.execute(
                update(SPOOL).where(SPOOL.c.id == bindparam("spool_id"))
                .values(state="done", payload=None, processed_at=now,
                        message_id=bindparam("worked_message_id")),
                [{"spool_id": i, "worked_message_id": m} for i, m in done])
        for item, exc in failed:
            await conn.execute(update(SPOOL).where(SPOOL.c.id == item.id)
                               .values(**_failure(item, exc, now)))

    def _count_out(self, done: list[tuple[int, int]], failed: list[tuple[_Due, Exception]]) -> None:
        gone = len(done) + sum(item.attempts + 1 >= attempts_allowed(exc) for item, exc in failed)
        self.spool.backlog = max(0, self.spool.backlog - gone)
        metrics.SPOOL_PENDING.set(self.spool.backlog)
        for item, exc in failed:
            # The reason goes to the item (`hub spool show`); the log gets no message content.
            log.warning("spool item %s (%s) failed, attempt %s of %s: %s", item.id,
                        item.channel, item.attempts + 1, attempts_allowed(exc),
                        type(exc).__name__)


def _chunks(due: list[T]) -> list[list[T]]:
    """The batch in chunks of PARSE_FIRST, twice that, and so on up to PARSE_CHUNK."""
    chunks, start, size = [], 0, PARSE_FIRST
    while start < len(due):
        chunks.append(due[start:start + size])
        start, size = start + size, min(2 * size, PARSE_CHUNK)
    return chunks


async def _in_thread(parse: Callable[..., InboundMessage],
                     args: tuple[Any, ...]) -> InboundMessage | Exception:
    try:
        return await asyncio.to_thread(parse, *args)
    except Exception as exc:
        return exc


def describe(exc: BaseException) -> str:
    """What went wrong, without the SQL statement and its parameters (a citizen's data)."""
    while isinstance(exc, IntakeUnavailable) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    text = str(exc).split("\n[SQL:", 1)[0].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _failure(item: _Due, exc: Exception, now: datetime) -> dict[str, Any]:
    attempts = item.attempts + 1
    error = describe(exc)
    if attempts >= attempts_allowed(exc):
        metrics.SPOOL_FAILED.inc()
        return {"state": "failed", "attempts": attempts, "last_error": error}
    return {"attempts": attempts, "last_error": error,
            "next_attempt_at": now + timedelta(seconds=min(2 ** attempts, MAX_RETRY_SECONDS))}


def attempts_allowed(exc: Exception) -> int:
    return FETCH_ATTEMPTS if isinstance(exc, FetchLater) else MAX_ATTEMPTS


def _is_unavailable(exc: Exception) -> bool:
    return isinstance(exc, IntakeUnavailable | DatabaseUnavailable) or is_transient(exc)


def _check_picklable(channel: str, parser: Parser) -> None:
    try:
        pickle.dumps(parser)
    except Exception as exc:
        raise TypeError(f"the {channel} channel's spool parser cannot go to a parse process "
                        f"({type(exc).__name__}); give it a module-level, picklable parser") from exc


async def purge_worked(db: Database, keep: timedelta) -> int:
    """Forget worked items older than `keep`; the messages table keeps deduping resends."""
    async with db.write_connection() as conn:
        result = await conn.execute(delete(SPOOL).where(SPOOL.c.state == "done",
                                                        SPOOL.c.processed_at < utcnow() - keep))
    return int(result.rowcount or 0)
