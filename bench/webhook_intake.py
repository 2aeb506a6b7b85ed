"""Signed Twilio SMS webhooks at rising concurrency: the hub's `POST /webhooks/twilio/sms` against
a bare aiohttp handler that checks the signature and does one INSERT on the same database,
measured by the same client in the same run, rounds interleaved, on SQLite and PostgreSQL.

* hub: `hub serve`'s own start-up (`hub.cli._serve`) in a child process, shipped configuration
  (the repository's routing rules, acknowledgments on, embedded jobs, the spool's parse process)
  plus `[twilio] account_sid/auth_token/from_number` and a `[hub] public_url` that is not the
  address it listens on, as behind a proxy. Its `[twilio] api_base_url` points at the Twilio
  stand-in (tests/support/twilio_api.py) in this process, so nothing leaves the machine.
* bare: an aiohttp app in a child process of its own: the form read, `X-Twilio-Signature`
  checked with twilio's RequestValidator against the same public URL, one INSERT + commit of
  sid, sender and text into a table of the hub's database, through an engine made as the hub
  makes its write engine (SQLite: WAL file, synchronous=FULL, one writer connection;
  PostgreSQL: a pool, jit off); it answers the same empty TwiML.
* client: this process (aiohttp, one kept-alive connection per concurrent sender), every
  webhook signed beforehand with twilio's own `compute_signature` for the public URL, each
  with a distinct MessageSid and from a number not seen before: each webhook is a citizen's
  first text, so the hub's work behind each answer is the same in every run (a new
  conversation, routed, and its acknowledgment texted back through the stand-in).

For each concurrency level: 200s per second, p50/p99 latency of the 200s, and hub/bare (the
median of the per-round ratios; goal >= 0.6). After each hub run the bench waits until every
answered webhook is an inbound message (spool worked, intake committed), so the hub's figure is
not only "answered"; that time gives "worked/s". CPU ms per request of each server process
(with its children), which the machine's load does not inflate, are printed too. At the end it
counts spool entries and messages in the hub's database, and rows in the bare table, against
the 200s each answered.

    python bench/webhook_intake.py [--db sqlite|postgres|both] [-n 1000] [-c 1,4,16,64] [-r 3]
                                   [--quick] [--pg-url URL]

Figures only; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from pydantic import AnyHttpUrl, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, Text, func, insert, select

from bench.ingest import PG_URL, fresh_database, shipped_settings, worked
from bench.served import Server, _child_setup, child_server, cpu_seconds, free_port, hub_main
from hub.adapters.sms.inbound import INBOUND_PATH, TWIML_EMPTY
from hub.config import Settings, TwilioSection
from hub.model import OutboxState
from hub.storage.db import Database
from hub.storage.tables import OutboxItem, SpoolEntry
from tests.support.http_standin import free_socket
from tests.support.twilio_api import ACCOUNT_SID, AUTH_TOKEN, TwilioApi, signature

PUBLIC_URL = "https://hub.city.example"  # what Twilio was given; not where the servers listen
CITY_NUMBER = "+15005550006"
FIRST_CITIZEN = 4_152_000_000  # +14152000000, +14152000001, ...
TEXTS = ("The streetlight on Elm St is out", "Pothole on 3rd Ave near the school, quite deep",
         "Bins on Oak Road were not collected this week", "Water leaking from a hydrant at the "
         "corner of Main and 5th, it has been running since this morning")
SERVERS = ("hub", "bare")

BARE = Table("bench_bare_webhook", MetaData(),
             Column("id", Integer, primary_key=True),
             Column("message_sid", String(34), unique=True, nullable=False),
             Column("sender", String(32), nullable=False),
             Column("body", Text, nullable=False))


# -- the servers (child processes) ------------------------------------------------------------


def webhook_settings(workdir: Path, url: str, http_port: int, twilio_url: str) -> Settings:
    """The shipped settings (bench/ingest.py) with the SMS channel configured and the HTTP
    server on `http_port`. No mail arrives, so nothing is sent to the relay port; the SMS
    acknowledgments go to `twilio_url`."""
    base: Settings = shipped_settings(workdir, url, relay_port=25)
    return base.model_copy(update={
        "hub": base.hub.model_copy(update={"public_url": AnyHttpUrl(PUBLIC_URL)}),
        "http": base.http.model_copy(update={"host": "127.0.0.1", "port": http_port}),
        "twilio": TwilioSection(account_sid=ACCOUNT_SID, auth_token=SecretStr(AUTH_TOKEN),
                                from_number=CITY_NUMBER, api_base_url=twilio_url),
    })


def _bare_main(url: str, conn: Connection, log_path: str) -> None:
    _child_setup(log_path)
    asyncio.run(_bare_serve(url, conn))


async def _bare_serve(url: str, conn: Connection) -> None:
    """Child process: the bare handler on a free port; sends the port, runs until SIGTERM."""
    from aiohttp import web
    from twilio.request_validator import RequestValidator

    engine = Database(url).write_engine  # the hub's write engine settings, nothing else of it
    # Less its pre-ping on PostgreSQL: a round trip per checkout, i.e. per request here (per
    # batch in the hub's spool), which a bare handler would not pay.
    engine.pool._pre_ping = False
    async with engine.begin() as setup:
        await setup.run_sync(BARE.create, checkfirst=True)
    validator = RequestValidator(AUTH_TOKEN)
    statement = insert(BARE)

    async def inbound(request: web.Request) -> web.Response:
        form = await request.post()
        if not validator.validate(PUBLIC_URL + request.path_qs, form,
                                  request.headers.get("X-Twilio-Signature", "")):
            return web.Response(status=403)
        async with engine.begin() as db:
            await db.execute(statement, {"message_sid": form["MessageSid"],
                                         "sender": form["From"], "body": form["Body"]})
        return web.Response(text=TWIML_EMPTY, content_type="text/xml")

    app = web.Application()
    app.router.add_post(INBOUND_PATH, inbound)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = free_socket()
    await web.SockSite(runner, sock).start()
    conn.send([f"http://127.0.0.1:{sock.getsockname()[1]}"])
    await asyncio.Event().wait()


# -- the client ------------------------------------------------------------------------------

Request = tuple[bytes, dict[str, str]]


class Webhooks:
    """Signed inbound-SMS webhooks as Twilio posts them, each with a new MessageSid."""

    def __init__(self, api: TwilioApi) -> None:
        self.api = api
        self.made = 0

    def make(self, count: int) -> list[Request]:
        requests = []
        for _ in range(count):
            index, self.made = self.made, self.made + 1
            params = self.api.inbound_params(
                f"+1{FIRST_CITIZEN + index}", TEXTS[index % len(TEXTS)], to=CITY_NUMBER,
                message_sid="SM" + uuid.uuid4().hex)
            headers = {"X-Twilio-Signature": signature(AUTH_TOKEN, PUBLIC_URL + INBOUND_PATH,
                                                       params),
                       "Content-Type": "application/x-www-form-urlencoded",
                       "I-Twilio-Idempotency-Token": secrets.token_hex(16),
                       "User-Agent": "TwilioProxy/1.1"}
            requests.append((urlencode(params).encode(), headers))
        return requests


@dataclass
class Run:
    seconds: float
    latencies: list[float]  # of the 200s
    statuses: Counter[int]  # 0: no answer (connection error or timeout)
    cpu: float  # CPU seconds of the server (and its children) from the first request
    worked_seconds: float | None = None  # hub: until every answered webhook was a message

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds


async def post_all(url: str, requests: list[Request], concurrency: int) -> Run:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    pending = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def sender() -> None:
            for body, headers in pending:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as reply:
                        await reply.read()
                        status = reply.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(seconds, latencies, statuses, 0.0)


async def measure(server: Server, db: Database, requests: list[Request],
                  concurrency: int) -> Run:
    cpu = cpu_seconds(server.pid)
    started = time.perf_counter()
    run = await post_all(server.url, requests, concurrency)
    server.answered += run.statuses[200]
    if server.name == "hub":  # the figure counts once the webhooks are messages
        # Each answered webhook is a message (or set aside as failed: `counts` tells)...
        await until_none(db, PENDING_SPOOL, "spool entries are still pending", 600.0)
        run.worked_seconds = time.perf_counter() - started
        # ...and its acknowledgment sent, so that the next run starts on a quiet hub.
        await until_none(db, UNSENT, "outbox items are still unsent", 120.0)
    run.cpu = cpu_seconds(server.pid) - cpu
    return run


async def counts(db: Database) -> dict[str, int]:
    """Spool entries by state, inbound messages, conversations, outbox items by state, rows
    of the bare table."""
    inbound, conversations, _ = await worked(db)
    async with db.read() as session:
        spool = {state: n for state, n in await session.execute(
            select(SpoolEntry.state, func.count()).group_by(SpoolEntry.state))}
        outbox = {state: n for state, n in await session.execute(
            select(OutboxItem.state, func.count()).group_by(OutboxItem.state))}
        bare = await session.scalar(select(func.count()).select_from(BARE))
    return {"spooled": sum(spool.values()), **{f"spool {k}": v for k, v in spool.items()},
            "messages": inbound, "conversations": conversations,
            **{f"outbox {k}": v for k, v in outbox.items()}, "bare rows": int(bare or 0)}


PENDING_SPOOL = (select(func.count()).select_from(SpoolEntry)
                 .where(SpoolEntry.state == "pending"))
UNSENT = (select(func.count()).select_from(OutboxItem)
          .where(OutboxItem.state.in_((OutboxState.PENDING.value, OutboxState.SENDING.value))))


async def until_none(db: Database, count: Any, what: str, limit: float) -> None:
    """Until the `count` query says 0 (or `limit` seconds are over, which is said)."""
    deadline, left = time.monotonic() + limit, 0
    while time.monotonic() < deadline:
        async with db.read() as session:
            left = int(await session.scalar(count) or 0)
        if not left:
            return
        await asyncio.sleep(0.02)
    print(f"    note: after {limit:.0f} s {left} {what}", flush=True)


# -- the bench -------------------------------------------------------------------------------


@dataclass
class Level:
    runs: dict[str, list[Run]] = field(default_factory=lambda: {s: [] for s in SERVERS})

    def ratios(self) -> list[float]:
        return [hub.rate / bare.rate for hub, bare in zip(*self.runs.values(), strict=True)
                if bare.rate]


async def bench_backend(backend: str, api: TwilioApi, args: argparse.Namespace
                        ) -> tuple[dict[int, Level], dict[str, int], dict[str, int]]:
    webhooks = Webhooks(api)
    levels = {c: Level() for c in args.concurrency}
    async with fresh_database(backend, args.pg_url, "bench_webhook") as (workdir, url):
        settings = webhook_settings(workdir, url, free_port(), api.url)
        async with child_server("hub", hub_main, (settings,), workdir / "hub.log",
                                INBOUND_PATH) as hub, \
                child_server("bare", _bare_main, (url,), workdir / "bare.log",
                             INBOUND_PATH) as bare:
            servers = {"hub": hub, "bare": bare}
            print(f"{backend}: hub pid {hub.pid}, bare pid {bare.pid}", flush=True)
            db = Database(url)
            try:
                for server in servers.values():  # warm-up: connections, first statements
                    await measure(server, db, webhooks.make(args.warmup), 4)
                for round_no in range(1, args.rounds + 1):
                    for concurrency, level in levels.items():
                        order = SERVERS if round_no % 2 else SERVERS[::-1]
                        for name in order:
                            run = await measure(servers[name], db,
                                                webhooks.make(args.count), concurrency)
                            level.runs[name].append(run)
                            print(f"  round {round_no} c={concurrency:<3} {name:<4} "
                                  f"{run_line(run, args.count)}", flush=True)
                final = await counts(db)
            finally:
                await db.dispose()
            answered = {name: server.answered for name, server in servers.items()}
    return levels, final, answered


def run_line(run: Run, count: int) -> str:
    line = (f"{run.rate:7.0f} req/s  p50 {ms(statistics.median(run.latencies))}  "
            f"p99 {ms(p99(run.latencies))}  cpu {run.cpu / count * 1000:5.2f} ms/req")
    if run.worked_seconds:
        line += f"  worked {count / run.worked_seconds:6.0f}/s"
    others = {status: n for status, n in run.statuses.items() if status != 200}
    return line + (f"  not 200: {others}" if others else "")


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:6.1f} ms"


def report(backend: str, levels: dict[int, Level], final: dict[str, int],
           answered: dict[str, int], args: argparse.Namespace) -> None:
    title = "SQLite (WAL file)" if backend == "sqlite" else "PostgreSQL"
    print(f"\n{title}: {args.count} webhooks per run, median of {args.rounds} interleaved "
          f"round(s); load average {os.getloadavg()[0]:.2f}")
    print(f"{'conc':>4} | {'hub req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'worked/s':>8} "
          f"{'cpu ms':>6} | {'bare req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'cpu ms':>6} | "
          f"{'hub/bare':>8} {'(min-max)':>10} | not 200")
    for concurrency, level in levels.items():
        hub, bare = level.runs["hub"], level.runs["bare"]
        ratios = level.ratios()
        failed = sum((r.statuses for r in hub + bare), Counter())
        del failed[200]
        print(f"{concurrency:>4} | {median(r.rate for r in hub):9.0f} "
              f"{median(statistics.median(r.latencies) for r in hub) * 1000:7.1f} "
              f"{median(p99(r.latencies) for r in hub) * 1000:7.1f} "
              f"{median(args.count / (r.worked_seconds or 1) for r in hub):8.0f} "
              f"{median(r.cpu for r in hub) / args.count * 1000:6.2f} | "
              f"{median(r.rate for r in bare):10.0f} "
              f"{median(statistics.median(r.latencies) for r in bare) * 1000:7.1f} "
              f"{median(p99(r.latencies) for r in bare) * 1000:7.1f} "
              f"{median(r.cpu for r in bare) / args.count * 1000:6.2f} | "
              f"{median(ratios):8.2f} {min(ratios):4.2f}-{max(ratios):4.2f} | "
              f"{sum(failed.values())}")
    spool = ", ".join(f"{k.split()[1]} {v}" for k, v in final.items() if k.startswith("spool "))
    outbox = ", ".join(f"{k.split()[1]} {v}" for k, v in final.items() if k.startswith("outbox "))
    whole = (final["spooled"] == answered["hub"] == final["messages"]
             and final["bare rows"] == answered["bare"])
    print(f"  hub: {answered['hub']} webhooks answered 200 -> {final['spooled']} spool entries "
          f"({spool}) -> {final['messages']} inbound messages in {final['conversations']} "
          f"conversations (outbox: {outbox or 'empty'});\n  bare: {answered['bare']} answered "
          f"200 -> {final['bare rows']} rows   [{'every webhook stored' if whole else 'MISMATCH'}]")


def median(values: Any) -> float:
    return statistics.median(list(values))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("-n", "--count", type=int, default=1000, help="webhooks per run")
    parser.add_argument("-c", "--concurrency", default="1,4,16,64",
                        help="concurrent senders, comma-separated levels")
    parser.add_argument("-r", "--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=50, help="webhooks before round 1")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 100 webhooks per run, one round")
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    if args.quick:
        args.count, args.rounds, args.warmup = 100, 1, 10
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    backends = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    print(f"webhook intake: {', '.join(backends)}, concurrency {args.concurrency}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    async with TwilioApi() as api:
        for backend in backends:
            results[backend] = await bench_backend(backend, api, args)
        texts_out = len(api.requests)
    for backend, (levels, final, answered) in results.items():
        report(backend, levels, final, answered, args)
    print(f"\nreq/s: 200s per second as the client saw them; worked/s: the same webhooks until "
          f"each was an inbound message;\ncpu ms: CPU per request of the server process and "
          f"its children (the hub's includes the work behind the answer).\nrequests to the "
          f"Twilio stand-in: {texts_out}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
