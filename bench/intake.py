"""Intake throughput and latency on SQLite and PostgreSQL, next to the bare insert rate.

For each backend it measures, in the same run:
  * bare:   one plain INSERT + commit per message, straight through the driver (aiosqlite with
            the hub's pragmas / asyncpg), i.e. the floor the storage itself sets;
  * intake: Intake.accept() per message (dedupe, contact, threading, routing, commit),
            sequentially (latency) and with N concurrent senders (throughput).

Usage: python bench/intake.py [-n 2000] [--concurrency 16] [--pg-url postgresql+asyncpg://...]
Prints figures only; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiosqlite
import asyncpg

from hub.app import Hub
from hub.config import Settings
from hub.model import InboundMessage, ThreadHints, utcnow
from hub.storage.db import upgrade

BARE_TABLE = "CREATE TABLE bench_bare (id INTEGER PRIMARY KEY, provider_id TEXT UNIQUE, body TEXT)"


def message(i: int, run: str) -> InboundMessage:
    return InboundMessage(
        channel="sms", provider_id=f"{run}-{i}", sender=f"+1555{i % 5000:07d}",
        text=f"Streetlight {i} is out on Elm Street", received_at=utcnow(),
        thread=ThreadHints(continue_latest=True),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, count: int, seconds: float, latencies: list[float] | None = None) -> float:
    rate = count / seconds
    line = f"  {label:<34} {rate:9.0f} msg/s"
    if latencies:
        line += (f"   p50 {statistics.median(latencies) * 1000:6.2f} ms"
                 f"   p99 {pct(latencies, 0.99) * 1000:6.2f} ms")
    print(line, flush=True)
    return rate


async def timed(n: int, concurrency: int,
                one: Callable[[int], Awaitable[object]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def sender() -> None:
        for i in counter:
            started = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def bare_sqlite(path: Path, n: int) -> float:
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
            await db.execute(f"PRAGMA {pragma}")
        await db.execute(BARE_TABLE)

        async def insert(i: int) -> None:
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO bench_bare (provider_id, body) VALUES (?, ?)",
                             (f"bare-{i}", "Streetlight is out"))
            await db.execute("COMMIT")

        seconds, lat = await timed(n, 1, insert)
    return report("bare INSERT (aiosqlite)", n, seconds, lat)


async def bare_postgres(dsn: str, n: int, concurrency: int) -> tuple[float, float]:
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    await pool.execute(BARE_TABLE.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY"))

    async def insert(i: int, tag: str) -> None:
        await pool.execute("INSERT INTO bench_bare (provider_id, body) VALUES ($1, $2)",
                           f"{tag}-{i}", "Streetlight is out")

    seconds, lat = await timed(n, 1, lambda i: insert(i, "seq"))
    seq = report("bare INSERT (asyncpg), 1 sender", n, seconds, lat)
    seconds, lat = await timed(n, concurrency, lambda i: insert(i, "par"))
    par = report(f"bare INSERT (asyncpg), {concurrency} senders", n, seconds, lat)
    await pool.close()
    return seq, par


async def through_intake(url: str, data_dir: Path, n: int, concurrency: int) -> tuple[float, float]:
    await upgrade(url)
    settings = Settings.model_validate({
        "hub": {"data_dir": str(data_dir), "secret_key": "bench"},
        "database": {"url": url, "migrate_on_start": False},
        "smtp": {"enabled": False}, "email": {"acknowledge": False},
        "routing": {"rules_dir": str(data_dir / "none"), "watch": False},
    })
    hub = Hub(settings, adapters=[])
    await hub.prepare()
    run = uuid.uuid4().hex[:6]
    try:
        seconds, lat = await timed(n, 1, lambda i: hub.intake.accept(message(i, run + "s")))
        seq = report("intake, 1 sender", n, seconds, lat)
        seconds, lat = await timed(n, concurrency,
                                   lambda i: hub.intake.accept(message(i, run + "p")))
        par = report(f"intake, {concurrency} senders", n, seconds, lat)
    finally:
        await hub.stop()
    return seq, par


async def pg_database(base: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    name = f"hub_bench_{uuid.uuid4().hex[:8]}"
    admin = base.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(admin)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return base.rsplit("/", 1)[0] + f"/{name}", drop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="messages per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"SQLite (WAL, synchronous=FULL), n={args.n}")
        bare = await bare_sqlite(root / "bare.db", args.n)
        seq, par = await through_intake(f"sqlite+aiosqlite:///{root / 'hub.db'}", root / "d1",
                                        args.n, args.concurrency)
        print(f"  intake / bare: {seq / bare:.2f} (1 sender), {par / bare:.2f} "
              f"({args.concurrency} senders)")
        print(f"PostgreSQL, n={args.n}")
        url, drop = await pg_database(args.pg_url)
        try:
            bare_seq, bare_par = await bare_postgres(url.replace("+asyncpg", ""), args.n,
                                                     args.concurrency)
            seq, par = await through_intake(url, root / "d2", args.n, args.concurrency)
            print(f"  intake / bare: {seq / bare_seq:.2f} (1 sender), {par / bare_par:.2f} "
                  f"({args.concurrency} senders)")
        finally:
            await drop()


if __name__ == "__main__":
    asyncio.run(main())
