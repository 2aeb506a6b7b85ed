"""Staff API latency at scale: list, next page, search (`q=`) and detail, on SQLite and
PostgreSQL, at N conversations and at 1,000 (the "bare" reference for the growth ratio).

For each backend and size it seeds a fresh database straight through SQLAlchemy Core
(multi-row inserts of contacts, identities, conversations and 1-3 messages each, subjects and
bodies drawn from a Zipf-weighted vocabulary; not through the intake), then serves it with
`hub serve` as shipped in a child process and runs C concurrent clients from this one, each request
authenticated as an agent of four of the five queues (so visibility is part of every query):

  list        GET /api/v1/conversations
  next page   the same with `cursor=` from the page before (each client walks 20 pages deep)
  q=common    the vocabulary's most frequent word (in most conversations)
  q=mid       a word in about one message in sixteen
  q=rare      a word planted in one conversation in 5,000
  q=address   a phone-number fragment (contact addresses)
  q=2ch       a two-letter query (too short for a trigram index)
  detail      GET /api/v1/conversations/{id} of a random visible conversation

Usage: python bench/api.py [-n 100000] [--requests 300] [-c 10] [--backends sqlite,postgres]
       [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
PostgreSQL runs in a throw-away database the bench creates and drops. Prints figures only;
nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import asyncpg
from sqlalchemy import Column, MetaData, Table, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from bench.served import child_server, hub_main, on_free_port
from hub.auth import create_token
from hub.config import Settings
from hub.staff import add_staff
from hub.storage.db import Database, upgrade
from hub.storage.tables import Contact, Conversation, Identity, Message, Queue

QUEUES = ("roads", "waste", "taxes", "parks", "general")
AGENT_QUEUES = QUEUES[:4]
SEED_AT = "0003"  # the revision before 0004_text_search
MID_WORD = "mould"  # in about one message in sixteen
RARE_WORD = "quillfeather"
RARE_EVERY = 5000
ADDRESS_QUERY = "5550123"
SHORT_QUERY = "ol"
CHUNK = 5000
PAGES = 20  # how deep each client walks with next_cursor before starting over
_VOCABULARY = (
    "street light pothole road bin garbage trash recycling permit licence noise music party "
    "dog barking tree branch park bench water leak flood sewer parking ticket tax bill school "
    "bus graffiti wall bridge crossing signal snow ice salt sidewalk crack hole rat pest smell "
    "fire hydrant library hours pool gym festival market vendor taxi bike lane speed camera "
    "fine appeal refund payment invoice account address move registration birth certificate "
    "marriage passport vote election council meeting complaint neighbour fence building "
    "construction scaffold dust traffic jam accident police ambulance clinic vaccine elderly "
    "care housing rent repair heating boiler mould window door roof gutter drain manhole cover "
    "playground swing slide football pitch court tennis basketball cemetery grave funeral "
    "allotment garden compost collection missed schedule holiday calendar bulky furniture "
    "mattress fridge asbestos paint chemical battery glass paper cardboard plastic metal "
    "broken damaged dangerous urgent please help thank you since last week again still"
)
_FILLER = "the a my on in at of for and is was not near our this that"
_FIRST = "ana ben carla david elena farid grace hugo ines jonas karin luis maria nora omar"
_LAST = "garcia smith muller rossi novak silva kowalski jensen dubois costa lopez meyer"
WORDS, FILLER, FIRST, LAST = (text.split() for text in (_VOCABULARY, _FILLER, _FIRST, _LAST))


# -- seeding ----------------------------------------------------------------------------------


@dataclass
class Corpus:
    """Draws subjects and bodies: vocabulary words by Zipf weight, with filler between."""

    rng: random.Random
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.weights = [1.0 / (rank + 1) for rank in range(len(WORDS))]

    def words(self, count: int) -> list[str]:
        drawn = self.rng.choices(WORDS, self.weights, k=count)
        return [w if self.rng.random() > 0.3 else f"{self.rng.choice(FILLER)} {w}" for w in drawn]

    def subject(self) -> str:
        return " ".join(self.words(self.rng.randint(3, 7))).capitalize()

    def body(self, rare: bool) -> str:
        words = self.words(self.rng.randint(10, 60))
        if rare:
            words.insert(self.rng.randrange(len(words)), RARE_WORD.capitalize())
        return " ".join(words).capitalize() + "."


@dataclass
class Seeded:
    """What the clients need to know of the seeded rows."""

    conversation_ids: list[int]  # those the agent sees
    insert_seconds: float
    migrate_seconds: float  # the migrations after SEED_AT: building the search indexes


def _rows(n: int, rng: random.Random) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, row) in insert order: a contact's rows before its conversations'."""
    corpus = Corpus(rng)
    now = datetime.now(UTC)
    contact_id = identity_id = message_id = 0
    for conversation_id in range(1, n + 1):
        if contact_id == 0 or rng.random() < 0.7:  # about 1.4 conversations per contact
            contact_id += 1
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            yield "contacts", {"id": contact_id, "name": name.title(), "created_at": now}
            for channel, address in _addresses(contact_id, name, rng):
                identity_id += 1
                yield "identities", {"id": identity_id, "contact_id": contact_id,
                                     "channel": channel, "address": address, "created_at": now}
        last = now - timedelta(seconds=rng.randint(0, 365 * 86400))
        yield "conversations", {
            "id": conversation_id, "reference": f"B{conversation_id:09d}",
            "contact_id": contact_id, "channel": rng.choice(("email", "sms", "telegram")),
            "queue": rng.choice(QUEUES), "status": rng.choice(("open", "open", "pending",
                                                                "resolved", "closed")),
            "priority": "normal", "tags": [], "subject": corpus.subject(),
            "spam": rng.random() < 0.02, "auto_replies_sent": 0, "acknowledged": True,
            "created_at": last - timedelta(hours=2), "updated_at": last, "last_message_at": last}
        rare = conversation_id % RARE_EVERY == 7
        for k in range(rng.randint(1, 3)):
            message_id += 1
            yield "messages", {
                "id": message_id, "conversation_id": conversation_id,
                "direction": "inbound" if k % 2 == 0 else "outbound", "channel": "email",
                "body": corpus.body(rare and k == 0), "automatic": False, "flags": [],
                "meta": {}, "created_at": last - timedelta(minutes=10 * (3 - k))}


def _addresses(contact_id: int, name: str, rng: random.Random) -> list[tuple[str, str]]:
    # a permutation of the contact ids (7919 is prime to 10**7): every phone number unique
    phone = ("sms", f"+1555{(contact_id * 7919 + 12345) % 10_000_000:07d}")
    email = ("email", f"{name.replace(' ', '.')}.{contact_id}@mail.example")
    return [phone, email] if rng.random() < 0.3 else [rng.choice((phone, email))]


TABLES: dict[str, Table] = {model.__tablename__: model.__table__  # type: ignore[misc]
                            for model in (Contact, Identity, Conversation, Message)}


async def seed(url: str, n: int) -> Seeded:
    """Insert n conversations in chunks of multi-row INSERTs into the schema as it was before
    the search indexes, then migrate to head: the indexes are built once over the rows, as an
    upgrade of a running hub builds them (row by row, SQLite's FTS5 triggers would flush the
    index once per row)."""
    await upgrade(url, SEED_AT)
    started = time.perf_counter()
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await _insert_all(conn, _rows(n, random.Random(n)))
        if conn.dialect.name == "postgresql":
            for table in TABLES:  # explicit ids: move the sequences past them
                await conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                        f"(SELECT max(id) FROM {table}))"))
    inserted = time.perf_counter()
    await upgrade(url)
    migrated = time.perf_counter()
    # statistics and (PostgreSQL) the visibility map of a settled database, so that no
    # autovacuum of the fresh rows runs during the measurement
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE" if conn.dialect.name == "sqlite" else "VACUUM ANALYZE"))
        rows = await conn.execute(text("SELECT id FROM conversations WHERE spam = :f AND queue "
                                       "IN ('roads', 'waste', 'taxes', 'parks')"), {"f": False})
        visible = [row[0] for row in rows]
    await engine.dispose()
    return Seeded(visible, inserted - started, migrated - inserted)


async def _insert_all(conn: AsyncConnection, rows: Iterator[tuple[str, dict[str, Any]]]) -> None:
    pending: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
    for name, row in rows:
        pending[name].append(row)
        if len(pending[name]) >= CHUNK:
            await _flush(conn, pending, upto=name)
    await _flush(conn, pending, upto="messages")


def _as_seeded(table: Table, row: dict[str, Any]) -> Table:
    """`table` with only the columns the seed writes and no Python-side defaults: the seed
    writes the schema as it was at SEED_AT, without the columns later revisions added (their
    server defaults fill them when the migrations to head run)."""
    return Table(table.name, MetaData(), *(Column(c.name, c.type, primary_key=c.primary_key)
                                          for c in table.columns if c.name in row))


async def _flush(conn: AsyncConnection, pending: dict[str, list[dict[str, Any]]],
                 upto: str) -> None:
    """Write the buffered rows of `upto` and of every table before it (foreign keys)."""
    for name in TABLES:
        if pending[name]:
            await conn.execute(insert(_as_seeded(TABLES[name], pending[name][0])), pending[name])
            pending[name] = []
        if name == upto:
            return


async def make_agent(url: str) -> str:
    """Queues, and an agent of four of them with an API token: the token."""
    db = Database(url)
    try:
        async with db.transaction() as session:
            session.add_all([Queue(name=q, title=q.title()) for q in QUEUES])
            await session.flush()
            agent = await add_staff(session, "agent@city.example", name="Agent", role="agent",
                                    queues=list(AGENT_QUEUES))
            return await create_token(session, agent)
    finally:
        await db.dispose()


# -- the server (a child process) -------------------------------------------------------------


def bench_settings(url: str, data_dir: str, extra: dict[str, Any] | None = None) -> Settings:
    """The hub's settings for a bench server: no SMTP, no rules, no acknowledgments, no rate
    limit; `extra` adds sections (e.g. `{"redis": {"url": ...}}`)."""
    return Settings.model_validate({
        "hub": {"data_dir": data_dir, "secret_key": "bench"},
        "database": {"url": url, "migrate_on_start": False},
        "smtp": {"enabled": False}, "email": {"acknowledge": False},
        "routing": {"rules_dir": str(Path(data_dir) / "none"), "watch": False},
        "security": {"api_rate_per_minute": 10_000_000},
        **(extra or {}),
    })


@asynccontextmanager
async def served(url: str, data_dir: Path,
                 extra: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """`hub serve` as shipped, in a child process (`bench.served.hub_main`: its own start-up,
    garbage-collector tuning and work process included) on `bench_settings(url, data_dir,
    extra)`: its base URL."""
    settings = on_free_port(bench_settings(url, str(data_dir), extra))
    log = data_dir.with_name(f"{data_dir.name}.log")  # the data directory is the hub's to make
    async with child_server("hub", hub_main, (settings,), log) as server:
        yield f"http://127.0.0.1:{server.port('http')}"


# -- the clients ------------------------------------------------------------------------------

API = "/api/v1/conversations"


@dataclass
class Clients:
    base: str
    token: str
    concurrency: int
    session: aiohttp.ClientSession | None = None

    async def get(self, path: str) -> tuple[float, dict[str, Any]]:
        assert self.session is not None
        started = time.perf_counter()
        async with self.session.get(self.base + path,
                                    headers={"Authorization": f"Bearer {self.token}"}) as reply:
            body = await reply.json()
            if reply.status != 200:
                raise RuntimeError(f"GET {path}: {reply.status} {body}")
        return time.perf_counter() - started, body

    async def run(self, requests: int, one: Callable[[int], Awaitable[float]]) -> list[float]:
        """`requests` calls of `one` over `concurrency` clients, after a warm-up of two calls
        per client, also concurrent: a sequential one would open one of the server's pooled
        database connections and leave the others to open (and prepare their statements)
        inside the measured calls."""
        await self._concurrently(2 * self.concurrency, one)
        return await self._concurrently(requests, one)

    async def _concurrently(self, requests: int,
                            one: Callable[[int], Awaitable[float]]) -> list[float]:
        counter = iter(range(requests))
        latencies: list[float] = []

        async def client() -> None:
            for i in counter:
                latencies.append(await one(i))

        await asyncio.gather(*(client() for _ in range(self.concurrency)))
        return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def endpoints(clients: Clients, seeded: Seeded,
              rng: random.Random) -> dict[str, Callable[[int], Awaitable[float]]]:
    """The measured requests by name: each call of one makes a request and returns its time."""
    cursors: dict[int, tuple[str | None, int]] = {}

    async def listing(_: int) -> float:
        seconds, _body = await clients.get(API)
        return seconds

    async def next_page(i: int) -> float:
        worker = i % clients.concurrency
        cursor, depth = cursors.get(worker, (None, 0))
        if cursor is None or depth >= PAGES:
            _, body = await clients.get(API)
            cursor, depth = body["next_cursor"], 0
        seconds, body = await clients.get(f"{API}?cursor={cursor}")
        cursors[worker] = (body["next_cursor"], depth + 1)
        return seconds

    def search(word: str) -> Callable[[int], Awaitable[float]]:
        async def one(_: int) -> float:
            seconds, _body = await clients.get(f"{API}?q={word}")
            return seconds
        return one

    async def detail(_: int) -> float:
        seconds, _body = await clients.get(f"{API}/{rng.choice(seeded.conversation_ids)}")
        return seconds

    words = {f"q={WORDS[0]} (common)": WORDS[0], f"q={MID_WORD} (mid)": MID_WORD,
             f"q={RARE_WORD} (rare)": RARE_WORD, f"q={ADDRESS_QUERY} (address)": ADDRESS_QUERY,
             f"q={SHORT_QUERY} (2 chars)": SHORT_QUERY}
    return {"list": listing, "next page": next_page,
            **{name: search(word) for name, word in words.items()}, "detail": detail}


async def measure(clients: Clients, seeded: Seeded, requests: int,
                  rng: random.Random) -> dict[str, list[float]]:
    plan = endpoints(clients, seeded, rng)
    return {name: await clients.run(requests, one) for name, one in plan.items()}


# -- a run ------------------------------------------------------------------------------------


@asynccontextmanager
async def database(backend: str, root: Path, pg_url: str, label: str) -> AsyncIterator[str]:
    if backend == "sqlite":  # a file of its own each time (-n 1000 seeds two of 1,000)
        yield f"sqlite+aiosqlite:///{root / f'{label}-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"hub_bench_api_{uuid.uuid4().hex[:8]}"
    admin = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@asynccontextmanager
async def seeded_database(backend: str, n: int, pg_url: str,
                          root: Path) -> AsyncIterator[tuple[str, Seeded, str]]:
    """A fresh database of n seeded conversations and the queues: (url, seeded, agent token)."""
    async with database(backend, root, pg_url, f"n{n}") as url:
        seeded = await seed(url, n)
        print(f"  seeded {n:,} conversations in {seeded.insert_seconds:.1f} s, then migrated "
              f"to head (search indexes built) in {seeded.migrate_seconds:.1f} s", flush=True)
        yield url, seeded, await make_agent(url)


async def one_size(backend: str, n: int, args: argparse.Namespace,
                   root: Path) -> dict[str, list[float]]:
    async with seeded_database(backend, n, args.pg_url, root) as (url, seeded, token), \
            served(url, root / f"data-{backend}-{n}-{uuid.uuid4().hex[:8]}") as base, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                limit=args.concurrency)) as session:
        clients = Clients(base, token, args.concurrency, session)
        return await measure(clients, seeded, args.requests, random.Random(1))


def report(n: int, bare: dict[str, list[float]], full: dict[str, list[float]]) -> None:
    print(f"  {'endpoint':<28} {'p50 1k':>8} {'p99 1k':>8} {f'p50 {n:,}':>12} "
          f"{f'p99 {n:,}':>12} {'p99 ratio':>9}   (ms)")
    for name, latencies in full.items():
        small = bare[name]
        p99 = pct(latencies, 0.99)
        print(f"  {name:<28} {statistics.median(small) * 1000:8.1f} {pct(small, 0.99) * 1000:8.1f}"
              f" {statistics.median(latencies) * 1000:12.1f} {p99 * 1000:12.1f}"
              f" {p99 / pct(small, 0.99):9.1f}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100_000, help="conversations")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint")
    parser.add_argument("-c", "--concurrency", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{args.concurrency} clients, {args.requests} requests per endpoint")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            print(f"{backend}:", flush=True)
            bare = await one_size(backend, 1000, args, Path(tmp))
            full = await one_size(backend, args.n, args, Path(tmp))
            report(args.n, bare, full)
            print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
