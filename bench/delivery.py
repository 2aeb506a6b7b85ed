"""Delivery throughput: staff replies from the outbox to a relay, against RQ's own worker.

In one run, with the same local aiosmtpd sink relay (its own process; it counts mails, relay
connections and Message-IDs seen twice):

(a) RQ's forking `Worker` x2 running N no-op jobs (the bare stack the hub builds on), and for
    reference RQ's `SimpleWorker` x2 on the same (no fork per job; what `hub worker` runs);
(b) N replies delivered by 2 `hub worker` processes on PostgreSQL (a throwaway database,
    created and dropped here) with Redis (a throwaway db number), each reply handed over as
    the API does right after its commit (`submit_delivery([id])`, all in one burst: replies
    submitted while an enqueue is on its way share a job); then N more as the worst case,
    one RQ job per reply (`enqueue_delivery([id])` each, awaited in turn);
(c) the same N replies in embedded mode: `hub serve`'s in-process jobs on SQLite, each reply
    submitted as at its commit, the outbox sweeper running meanwhile.

The replies are seeded before the clock starts (conversations, then `queue_outbound` in a few
transactions). Each figure runs from the first enqueue until every outbox row is `sent`.
Prints rates, ratios to (a), relay connections opened and the load average: figures only,
nothing here asserts on timings.

    python bench/delivery.py [-n 2000] [--pg URL] [--redis redis://127.0.0.1:6379] [--redis-db 12]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = "city.example"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
REPLIES_PER_CONVERSATION = 20
BODY = ("Hello Ana,\n\nthank you for telling us about the street light in front of number 12.\n"
        "A crew will replace it this week; we will write again once it is done.\n\n"
        "Kind regards,\nPublic Works\n")
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


# -- the sink relay (its own process) -----------------------------------------------------------

@dataclass
class SinkCounters:
    mails: Any  # multiprocessing.Value("q")
    connections: Any
    duplicates: Any

    def snapshot(self) -> tuple[int, int, int]:
        return self.mails.value, self.connections.value, self.duplicates.value


def _sink_main(port_pipe: Any, counters: SinkCounters, stop: Any) -> None:
    from aiosmtpd.smtp import SMTP, Envelope, Session

    seen: set[bytes] = set()

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            content = envelope.original_content or b""
            match = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
            key = match.group(1) if match else b""
            with counters.mails.get_lock():
                counters.mails.value += 1
            if key in seen:
                with counters.duplicates.get_lock():
                    counters.duplicates.value += 1
            seen.add(key)
            return "250 2.0.0 Ok: queued as SINK"

    class CountingSMTP(SMTP):
        def connection_made(self, transport: Any) -> None:
            with counters.connections.get_lock():
                counters.connections.value += 1
            super().connection_made(transport)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = Handler()
        server = await loop.create_server(
            lambda: CountingSMTP(handler, hostname="sink.test", loop=loop), "127.0.0.1", 0)
        port_pipe.send(server.sockets[0].getsockname()[1])
        # The stop flag is another process's: nothing to await but a poll.
        while not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        server.close()

    asyncio.run(serve())


@contextmanager
def sink_relay() -> Iterator[tuple[int, SinkCounters]]:
    ctx = multiprocessing.get_context("spawn")
    counters = SinkCounters(ctx.Value("q", 0), ctx.Value("q", 0), ctx.Value("q", 0))
    receive, send = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    process = ctx.Process(target=_sink_main, args=(send, counters, stop), daemon=True)
    process.start()
    port = receive.recv()
    try:
        yield port, counters
    finally:
        stop.set()
        process.join(5)
        if process.is_alive():
            process.terminate()


# -- (a) RQ's forking worker on no-op jobs -------------------------------------------------------

def _spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # RQ's warm shutdown
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_workers(redis: Any, queue: Any, count: int,
                      processes: list[subprocess.Popen[bytes]]) -> None:
    from rq import Worker

    deadline = time.monotonic() + 60
    while Worker.count(connection=redis, queue=queue) < count:
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            raise RuntimeError("the workers did not start")
        time.sleep(0.05)


def _jobs_done(redis: Any, queue: Any) -> int:
    from rq import Worker

    return sum(worker.successful_job_count + worker.failed_job_count
               for worker in Worker.all(connection=redis, queue=queue))


def rq_noop(redis_url: str, count: int, worker_class: str = "Worker") -> float:
    """Jobs per second of two RQ workers (forking `Worker` unless told) on no-op jobs."""
    from redis import Redis
    from rq import Queue

    redis = Redis.from_url(redis_url)
    queue = Queue(f"bench-noop-{uuid.uuid4().hex[:8]}", connection=redis)
    code = (f"from redis import Redis; from rq import Queue, {worker_class}; "
            f"r = Redis.from_url({redis_url!r}); "
            f"{worker_class}([Queue({queue.name!r}, connection=r)], connection=r)"
            ".work(logging_level='WARNING')")
    workers = [_spawn(code) for _ in range(2)]
    try:
        _wait_for_workers(redis, queue, 2, workers)
        started = time.perf_counter()
        with redis.pipeline() as pipe:
            for _ in range(count):
                queue.enqueue("os.getpid", result_ttl=0, pipeline=pipe)
            pipe.execute()
        while _jobs_done(redis, queue) < count:
            time.sleep(0.02)
        return count / (time.perf_counter() - started)
    finally:
        _stop(workers)
        redis.close()


# -- seeding replies ------------------------------------------------------------------------------

def _settings_data(workdir: Path, db_url: str, relay_port: int,
                   redis_url: str = "") -> dict[str, dict[str, Any]]:
    return {
        "hub": {"data_dir": str(workdir / "data"), "secret_key": "bench", "log_level": "WARNING"},
        "database": {"url": db_url, "migrate_on_start": False},
        "redis": {"url": redis_url, "queue_prefix": f"bench-{uuid.uuid4().hex[:8]}"},
        "smtp": {"enabled": True, "port": 0, "domains": [DOMAIN]},
        "email": {"from": f"City Hall <help@{DOMAIN}>", "relay_host": "127.0.0.1",
                  "relay_port": relay_port, "acknowledge": False},
        "routing": {"rules_dir": str(workdir / "no-rules"), "watch": False},
        "outbox": {"sweep_interval_seconds": 1.0},
    }


async def seed_replies(db_url: str, count: int) -> list[int]:
    """`count` staff replies waiting in the outbox (conversations of 20 replies each)."""
    from hub.storage.db import Database

    db = Database(db_url)
    try:
        conversations = await _seed_conversations(db, -(-count // REPLIES_PER_CONVERSATION))
        return await _seed_outbox(db, conversations, count)
    finally:
        await db.dispose()


async def _seed_conversations(db: Any, count: int) -> list[int]:
    """Conversations that each began with a citizen's mail (one transaction of their own:
    the replies' transactions then take their ids as the hub does)."""
    from hub.model import utcnow
    from hub.storage.tables import Contact, Conversation, Identity, Message

    created: list[Conversation] = []
    async with db.transaction() as session:
        for index in range(count):
            citizen = f"citizen{index}.{uuid.uuid4().hex[:6]}@example.org"
            contact = Contact(name=f"Citizen {index}")
            session.add(contact)
            await session.flush()
            session.add(Identity(contact_id=contact.id, channel="email", address=citizen))
            conversation = Conversation(
                reference=f"B{uuid.uuid4().hex[:9].upper()}", contact_id=contact.id,
                channel="email", queue="general", subject="Street light out")
            session.add(conversation)
            await session.flush()
            session.add(Message(
                conversation_id=conversation.id, direction="inbound", channel="email",
                sender=citizen, recipient=f"help@{DOMAIN}", subject="Street light out",
                body="The street light in front of number 12 is out.",
                provider_id=f"<in{index}.{uuid.uuid4().hex[:8]}@example.org>",
                thread_key=f"in{index}@example.org", received_at=utcnow()))
            created.append(conversation)
    return [conversation.id for conversation in created]


async def _seed_outbox(db: Any, conversations: list[int], count: int) -> list[int]:
    """The replies, through the hub's own `queue_outbound`, ten conversations a transaction."""
    from hub.outbound import outbox_id_for, queue_outbound
    from hub.storage.tables import Conversation

    ids: list[int] = []
    for first in range(0, len(conversations), 10):
        async with db.transaction() as session:
            for conversation_id in conversations[first:first + 10]:
                conversation = await session.get_one(Conversation, conversation_id)
                for _ in range(min(REPLIES_PER_CONVERSATION, count - len(ids))):
                    message = await queue_outbound(session, conversation, BODY)
                    ids.append(await outbox_id_for(session, message.id))
    return ids


async def wait_until_sent(db_url: str, count: int) -> None:
    """Poll (a cheap count, 20 times a second) until `count` outbox rows are sent."""
    from sqlalchemy import func, select

    from hub.storage.db import Database
    from hub.storage.tables import OutboxItem

    db = Database(db_url, pool_size=1)
    query = select(func.count()).select_from(OutboxItem).where(OutboxItem.state == "sent")
    try:
        while True:
            async with db.read() as session:
                if int(await session.scalar(query) or 0) >= count:
                    return
            await asyncio.sleep(0.05)
    finally:
        await db.dispose()


# -- (b) hub workers on PostgreSQL -------------------------------------------------------------

def _pg_admin(base_url: str, sql: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(run())


@contextmanager
def pg_database(base_url: str) -> Iterator[str]:
    from hub.storage.db import upgrade_sync

    name = f"hub_bench_{uuid.uuid4().hex[:10]}"
    _pg_admin(base_url, f'CREATE DATABASE "{name}"')
    try:
        url = base_url.rsplit("/", 1)[0] + f"/{name}"
        upgrade_sync(url)
        yield url
    finally:
        _pg_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _toml(data: dict[str, dict[str, Any]]) -> str:
    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, list):
            return "[" + ", ".join(value(v) for v in item) + "]"
        return '"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "".join(f"[{section}]\n" + "".join(f"{key} = {value(v)}\n" for key, v in keys.items())
                   for section, keys in data.items())


def hub_workers(db_url: str, redis_url: str, relay_port: int, count: int,
                workdir: Path) -> tuple[float, float]:
    """Replies per second delivered by two `hub worker` processes: (a burst of replies as the
    API hands them over, one job per reply)."""
    from redis import Redis
    from rq import Queue

    from hub.config import Settings
    from hub.jobs import RQJobs

    workdir.mkdir(parents=True, exist_ok=True)
    data = _settings_data(workdir, db_url, relay_port, redis_url)
    (workdir / "no-rules").mkdir()  # a config file must name a folder that exists
    config = workdir / "worker.toml"
    config.write_text(_toml(data))
    settings = Settings.model_validate(data)
    redis = Redis.from_url(redis_url)
    queue = Queue(f"{settings.redis.queue_prefix}-delivery", connection=redis)
    code = ("import sys; from hub.cli import main; "
            f"sys.exit(main(['--config', {str(config)!r}, 'worker']))")
    workers = [_spawn(code) for _ in range(2)]
    try:
        _wait_for_workers(redis, queue, 2, workers)

        async def run(one_job_each: bool, sent_before: int) -> float:
            ids = await seed_replies(db_url, count)
            jobs = RQJobs(redis_url, settings.redis.queue_prefix)
            try:
                started = time.perf_counter()
                for outbox_id in ids:
                    if one_job_each:  # the worst case: every reply a job of its own
                        await jobs.enqueue_delivery([outbox_id])
                    else:  # as the API does right after each reply's commit
                        jobs.submit_delivery([outbox_id])
                await jobs.drain()
                await wait_until_sent(db_url, sent_before + count)
                return count / (time.perf_counter() - started)
            finally:
                jobs.close()

        return asyncio.run(run(False, 0)), asyncio.run(run(True, count))
    finally:
        _stop(workers)
        redis.close()


# -- (c) embedded mode on SQLite ----------------------------------------------------------------

def embedded(relay_port: int, count: int, workdir: Path) -> float:
    """Replies per second delivered by one `hub serve`'s in-process jobs on SQLite."""
    from hub.app import Hub
    from hub.config import Settings
    from hub.storage.db import upgrade_sync

    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite+aiosqlite:///{workdir / 'embedded.db'}"
    upgrade_sync(db_url)
    ids = asyncio.run(seed_replies(db_url, count))
    settings = Settings.model_validate(_settings_data(workdir, db_url, relay_port))

    async def run() -> float:
        hub = Hub(settings)
        await hub.prepare()
        await hub.start(listeners=False, prepared=True)  # the outbox sweeper runs meanwhile
        try:
            started = time.perf_counter()
            for outbox_id in ids:  # as at each reply's commit
                hub.jobs.submit_delivery([outbox_id])
            await wait_until_sent(db_url, count)
            return count / (time.perf_counter() - started)
        finally:
            await hub.stop()

    return asyncio.run(run())


# -- the run ---------------------------------------------------------------------------------------

@contextmanager
def redis_db(base: str, number: int) -> Iterator[str]:
    from redis import Redis

    url = f"{base.rstrip('/')}/{number}"
    client = Redis.from_url(url)
    if client.dbsize():
        raise SystemExit(f"Redis db {number} at {base} is not empty; pick another with --redis-db")
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=2000)
    parser.add_argument("--pg", default=os.environ.get("HUB_BENCH_POSTGRES_URL", PG_DEFAULT))
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--redis-db", type=int, default=12)
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    count = options.count
    with tempfile.TemporaryDirectory() as tmp, redis_db(options.redis, options.redis_db) as url:
        workdir = Path(tmp)
        bare = rq_noop(url, count)
        simple = rq_noop(url, count, "SimpleWorker")
        with sink_relay() as (port, sink), pg_database(options.pg) as pg_url:
            before = sink.snapshot()
            distributed, one_each = hub_workers(pg_url, url, port, count, workdir / "pg")
            after_b = sink.snapshot()
        with sink_relay() as (port, sink):
            local = embedded(port, count, workdir / "embedded")
            after_c = sink.snapshot()
    b_mails, b_conns, b_dups = (after_b[i] - before[i] for i in range(3))
    c_mails, c_conns, c_dups = after_c
    print(f"Delivery, {count} replies per run; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} on {os.cpu_count()} cores")
    print(f"{'run':<44} {'per s':>7} {'vs (a)':>7} {'mails':>6} {'conns':>6} {'dups':>5}")
    print(f"{'(a) RQ forking Worker x2, no-op jobs':<44} {bare:7.0f} {1.0:7.2f}")
    print(f"{'    RQ SimpleWorker x2, no-op jobs':<44} {simple:7.0f} {simple / bare:7.2f}")
    print(f"{'(b) 2 hub workers, PostgreSQL + Redis':<44} {distributed:7.0f} "
          f"{distributed / bare:7.2f} {b_mails:6d} {b_conns:6d} {b_dups:5d}")
    print(f"{'    the same, one RQ job per reply':<44} {one_each:7.0f} {one_each / bare:7.2f}")
    print(f"{'(c) embedded, in-process jobs, SQLite':<44} {local:7.0f} {local / bare:7.2f} "
          f"{c_mails:6d} {c_conns:6d} {c_dups:5d}")
    print("mails/conns/dups: what the sink relay received, the connections opened to it, and "
          "Message-IDs it saw twice;\nfor (b), over both of its runs (twice the replies)."
          "\nRQ SimpleWorker on no-op jobs (no fork per job, as "
          "`hub worker` runs) bounds what one RQ job per reply can reach.")


if __name__ == "__main__":
    main()
