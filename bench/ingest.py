"""Ingest with the shipped configuration: N emails over SMTP until every one is a routed
conversation with its acknowledgment queued, on SQLite and PostgreSQL, beside django-helpdesk's
`get_email` on the same mails in the same run (bench/peers.py), rounds interleaved.

The hub runs as shipped: `hub serve` in a child process (its work process and parse process
with it), acknowledgments on, the repository's `routing_rules/`, embedded jobs delivering to a
local sink relay (a child process). One mail is sent and worked before the clock starts. The
client sends from a child process with one reused connection per sender. The clock starts at
the first MAIL FROM and stops when the last mail is a message in a conversation and every new
conversation has its acknowledgment in the outbox (the hub's own database, read by the bench).
Each round also prints `acks_sent_per_s`: the mails over the time until every one of those
acknowledgments is sent to the relay as well (the delivery work the first figure leaves behind).

    python bench/ingest.py [-n 1000] [-c 4] [-r 3] [--no-peer] [--backends sqlite,postgres]

Figures only; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script: bench.mails and bench.peers are importable
from bench.delivery import wait_until_sent  # noqa: E402
from bench.served import child_server, cpu_by_role, hub_main, on_free_port  # noqa: E402

DOMAIN = "city.example"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def send_all(port: int, mails: list[bytes], concurrency: int) -> tuple[float, int]:
    """(seconds, errors): every mail over SMTP, `concurrency` reused connections."""
    errors: list[str] = []

    def sender(share: list[bytes]) -> None:
        client = smtplib.SMTP("127.0.0.1", port, timeout=120)
        for raw in share:
            try:
                client.sendmail("citizen@example.org", [f"help@{DOMAIN}"], raw)
            except smtplib.SMTPException as exc:
                errors.append(type(exc).__name__)
        client.quit()

    threads = [threading.Thread(target=sender, args=(mails[i::concurrency],))
               for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, len(errors)


def _sink(port_queue: Any) -> None:
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Discard(), hostname="relay"),
                                          "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


def start_relay(ctx: Any) -> tuple[Any, int]:
    ports = ctx.Queue()
    process = ctx.Process(target=_sink, args=(ports,), daemon=True)
    process.start()
    return process, int(ports.get(timeout=30))


def shipped_settings(workdir: Path, url: str, relay_port: int) -> Any:
    from hub.config import Settings

    return Settings.model_validate({
        "hub": {"data_dir": str(workdir / "data"), "secret_key": "bench"},
        "database": {"url": url},
        "smtp": {"host": "127.0.0.1", "port": 0, "domains": [DOMAIN]},
        "email": {"relay_host": "127.0.0.1", "relay_port": relay_port, "acknowledge": True},
        "routing": {"rules_dir": str(REPO / "routing_rules"), "watch": False},
    })


@asynccontextmanager
async def fresh_database(backend: str, pg_url: str,
                         prefix: str = "bench_ingest") -> AsyncIterator[tuple[Path, str]]:
    """(a temporary directory, the URL of a fresh database migrated to the newest schema): a
    SQLite file in that directory, or a throw-away PostgreSQL database, dropped afterwards."""
    from hub.storage.db import upgrade

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        drop = None
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{workdir / 'hub.db'}"
        else:
            url, drop = await pg_database(pg_url, prefix)
        try:
            await upgrade(url)
            yield workdir, url
        finally:
            if drop is not None:
                await drop()


async def worked(db: Any) -> tuple[int, int, int]:
    """(inbound messages, conversations, acknowledgment outbox rows) in a hub's database."""
    from hub.storage.tables import Conversation, OutboxItem

    async with db.read() as session:
        inbound = await _inbound(session)
        conversations = await session.scalar(select(func.count()).select_from(Conversation))
        acks = await session.scalar(select(func.count()).select_from(OutboxItem))
    return inbound, int(conversations or 0), int(acks or 0)


async def _inbound(session: Any) -> int:
    from hub.storage.tables import Message

    return int(await session.scalar(select(func.count()).select_from(Message)
                                    .where(Message.direction == "inbound")) or 0)


async def hub_round(backend: str, pg_url: str, mails: list[bytes], concurrency: int,
                    relay_port: int, pool: Any) -> tuple[float, float, dict[str, Any]]:
    """(mails/s until all worked, 250s/s, counts) against `hub serve` as shipped, in a child
    process (its work and parse processes included)."""
    async with fresh_database(backend, pg_url) as (workdir, url):
        settings = on_free_port(shipped_settings(workdir, url, relay_port))
        async with child_server("hub", hub_main, (settings,), workdir / "hub.log") as hub, \
                polling(url) as db:
            base = await warmed_up(hub.port("smtp"), db)
            cpu_before = cpu_by_role(hub.pid)
            poller_before = time.process_time()
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            send_seconds, errors = await loop.run_in_executor(
                None, lambda: pool.apply(send_all, (hub.port("smtp"), mails, concurrency)))
            counts = await inbound_at_least(db, base[0] + len(mails))
            seconds = time.perf_counter() - started
            cpu = {role: seconds - cpu_before.get(role, 0.0)
                   for role, seconds in cpu_by_role(hub.pid).items()}
            poller = time.process_time() - poller_before
            inbound, conversations, acks = (now - then for now, then in zip(counts, base,
                                                                            strict=True))
            await wait_for_acks((inbound, conversations, acks))
            await wait_until_sent(url, counts[2])  # the acknowledgments at the relay too
            out_seconds = time.perf_counter() - started
    figures = {"inbound": inbound, "conversations": conversations, "acks": acks,
               "send_errors": errors,
               "hub_cpu_ms_per_mail": round(sum(cpu.values()) * 1000 / len(mails), 2),
               "of_which": {role: round(seconds * 1000 / len(mails), 2)
                            for role, seconds in sorted(cpu.items())},
               "bench_poller_cpu_ms_per_mail": round(poller * 1000 / len(mails), 2),
               "acks_sent_per_s": round(len(mails) / out_seconds, 1)}
    return len(mails) / seconds, len(mails) / send_seconds, figures


@asynccontextmanager
async def polling(url: str) -> AsyncIterator[Any]:
    """The bench's own connection to the hub's database, kept for the round (a new engine per
    count cost the machine a quarter of a core)."""
    from hub.storage.db import Database

    db = Database(url)
    try:
        yield db
    finally:
        await db.dispose()


WARM_UP = (b"From: warm@example.org\r\nTo: help@" + DOMAIN.encode() +
           b"\r\nSubject: warm-up\r\nMessage-ID: <warm-up@example.org>\r\n\r\nwarm-up\r\n")


async def warmed_up(port: int, db: Any) -> tuple[int, int, int]:
    """One mail sent and worked before the clock starts, so that it measures intake, not the
    work process's start-up; the counts it leaves."""
    await asyncio.to_thread(send_all, port, [WARM_UP], 1)
    return await inbound_at_least(db, 1)


async def inbound_at_least(db: Any, wanted: int) -> tuple[int, int, int]:
    """The counts of `worked`, once there are `wanted` inbound messages. Only that one is
    counted while waiting: the bench's polling takes CPU from the hub on the same cores."""
    while True:
        async with db.read() as session:
            if await _inbound(session) >= wanted:
                break
        await asyncio.sleep(0.05)
    return await worked(db)


async def wait_for_acks(counts: tuple[int, int, int]) -> None:
    # Acknowledgments commit with their message, so once every message is in they are too.
    _, conversations, acks = counts
    if acks < conversations:
        print(f"    note: {conversations - acks} conversations without an acknowledgment "
              "(rules may suppress some)", flush=True)


async def pg_database(base: str, prefix: str = "bench_ingest") -> tuple[str, Callable[[], Any]]:
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = base.replace("postgresql+asyncpg", "postgresql")
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    return base.rsplit("/", 1)[0] + f"/{name}", drop


def median_line(label: str, rates: list[float], unit: str = "mails/s") -> float:
    value = statistics.median(rates)
    shown = ", ".join(f"{r:.1f}" for r in rates)
    print(f"  {label:<44} {value:8.1f} {unit}   (rounds: {shown})", flush=True)
    return value


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=4)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--no-peer", action="store_true", help="skip django-helpdesk")
    args = parser.parse_args()

    from bench.mails import make_mails

    mails = make_mails(args.count)
    ctx = multiprocessing.get_context("spawn")
    relay, relay_port = start_relay(ctx)
    results: dict[str, list[float]] = {}
    sent: dict[str, list[float]] = {}
    print(f"ingest of {args.count} mails, shipped config, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    try:
        with ctx.Pool(1) as pool:
            for round_no in range(1, args.rounds + 1):
                for backend in args.backends.split(","):
                    rate, accept_rate, counts = await hub_round(
                        backend, args.pg_url, mails, args.concurrency, relay_port, pool)
                    results.setdefault(backend, []).append(rate)
                    sent.setdefault(backend, []).append(accept_rate)
                    print(f"  round {round_no} hub {backend}: {rate:.1f} mails/s worked, "
                          f"250s at {accept_rate:.1f}/s, {counts}", flush=True)
                if not args.no_peer:
                    from bench.peers import run_helpdesk

                    rate = (await asyncio.to_thread(run_helpdesk, mails, 1))[0]
                    results.setdefault("helpdesk", []).append(rate)
                    print(f"  round {round_no} django-helpdesk get_email: {rate:.1f} mails/s",
                          flush=True)
    finally:
        relay.terminate()
    print(f"\nmedians of {args.rounds} rounds (load average {os.getloadavg()[0]:.2f}):")
    peer = median_line("django-helpdesk get_email, SQLite WAL", results["helpdesk"]) \
        if "helpdesk" in results else None
    for backend in args.backends.split(","):
        hub_rate = median_line(f"hub {backend}, until routed + acknowledged", results[backend])
        median_line(f"hub {backend}, SMTP 250s", sent[backend])
        if peer:
            print(f"  {'ratio hub ' + backend + ' / django-helpdesk':<44} {hub_rate / peer:8.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
