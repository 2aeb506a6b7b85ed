"""Staff API and live events at scale (issue #14): PostgreSQL, 100,000 conversations and 1,000.

Part 1, the API: each size is seeded as `bench/api.py` seeds it (its `seed`, `served` and
`Clients` are used here), the real aiohttp app runs in a child process, and 1, then 10
concurrent clients (`-c`; one table each) time each request below twice, once as an agent of four
of the five queues (visibility is part of every query) and once as a supervisor (sees every
queue). Beside the latencies: the hub process's CPU time per request (user + system, from /proc;
PostgreSQL's own is not in it), which the machine's load inflates far less than the latencies:

  list          GET /api/v1/conversations (the first page)
  next page     the same with `cursor=` from the page before (up to 20 pages deep)
  deep cursor   a cursor 90% of the way down the whole list (newest activity first)
  q=...         bench/api.py's five searches (common, mid, rare word, address, 2 chars)
  detail        GET /api/v1/conversations/{id} of a random conversation the agent sees

Part 2, event latency (on the larger database): W WebSocket clients on `GET /api/v1/events`
(half with the supervisor's token, half with the agent's), each waited for until its
`{"kind": "ready"}` frame; then one sender posts E internal notes, one at a time, through
`POST /api/v1/conversations/{id}/notes` on conversations of the agent's queues (a note commits
and publishes `conversation.updated` with its message_id; a reply would need a configured
channel adapter and a delivery, which the bench's hub has not). Per client receipt: the time from
the POST's response (the note is committed before it) to that client's frame with the message_id
(negative when the frame beats the response), and the POST's own round trip. Twice: one hub
process with the in-process bus, then with `[redis] url` two hub processes, the clients on one
and the sender on the other, so each event crosses Redis pub/sub (`--no-redis` skips it).

Usage: python bench/staff_api.py [--quick] [-n 100000] [--requests 300] [-c 1,10]
       [--ws-clients 200] [--events 200] [--redis-url redis://127.0.0.1:6379/0] [--no-redis]
       [--pg-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
`--quick`: 1,000 conversations only, 20 WebSocket clients, fewer requests and events.
PostgreSQL runs in a throw-away database the bench creates and drops. Prints figures only;
nothing here asserts on timings. Goals (issue #14): p99 < 100 ms at 100,000; event p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.api import API, Clients, Seeded, bench_settings, endpoints, pct, seeded_database, served
from hub.app import reply_secret
from hub.auth import create_token
from hub.staff import add_staff
from hub.storage.db import Database
from hub.web import cursor

GOAL_MS = 100.0
DEEP = 0.9  # the deep cursor's position, as a fraction of the whole list
ROLES = ("agent", "supervisor")
Plan = dict[str, Callable[[int], Awaitable[float]]]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def make_supervisor(url: str) -> str:
    db = Database(url)
    try:
        async with db.transaction() as session:
            staff = await add_staff(session, "supervisor@city.example", name="Supervisor",
                                    role="supervisor")
            return await create_token(session, staff)
    finally:
        await db.dispose()


async def deep_cursor(url: str, data_dir: Path) -> str:
    """A signed list cursor at the conversation DEEP of the way down the list (every queue)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(text("SELECT count(*) FROM conversations"))
            row = (await conn.execute(text(
                "SELECT last_message_at, id FROM conversations "
                "ORDER BY last_message_at DESC, id DESC OFFSET :k LIMIT 1"),
                {"k": int(DEEP * (total or 0))})).one()
    finally:
        await engine.dispose()
    secret = reply_secret(bench_settings(url, str(data_dir)))
    return cursor.encode_time_id(secret, "conversations", row[0], row[1])


def with_deep_cursor(clients: Clients, plan: Plan, deep: str) -> Plan:
    async def deep_page(_: int) -> float:
        seconds, body = await clients.get(f"{API}?cursor={deep}")
        if not body["items"]:
            raise RuntimeError("the deep cursor's page is empty")
        return seconds

    names = list(plan)
    at = names.index("next page") + 1
    return {**{k: plan[k] for k in names[:at]}, "deep cursor": deep_page,
            **{k: plan[k] for k in names[at:]}}


# -- events -----------------------------------------------------------------------------------


@dataclass
class EventFigures:
    receipt: list[float] = field(default_factory=list)  # response -> each client's frame (s)
    by_role: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    post: list[float] = field(default_factory=list)  # the POST's round trip (s)
    missed: int = 0
    connect_seconds: float = 0.0


@dataclass
class Listener:
    role: str
    socket: aiohttp.ClientWebSocketResponse
    arrivals: dict[int, float] = field(default_factory=dict)  # message_id -> perf_counter


async def _listen(listener: Listener, got: Callable[[int], None]) -> None:
    async for frame in listener.socket:
        at = time.perf_counter()
        if frame.type != aiohttp.WSMsgType.TEXT:
            break
        event = json.loads(frame.data)
        message_id = event.get("message_id")
        if event.get("action") == "note" and isinstance(message_id, int):
            listener.arrivals[message_id] = at
            got(message_id)


async def _connect(session: aiohttp.ClientSession, base: str, token: str,
                   role: str) -> Listener:
    socket = await session.ws_connect(f"{base}/api/v1/events",
                                      headers={"Authorization": f"Bearer {token}"})
    ready = await socket.receive_json(timeout=30)
    if ready.get("kind") != "ready":
        raise RuntimeError(f"first frame is not ready: {ready}")
    return Listener(role, socket)


async def event_latency(listen_base: str, post_base: str, tokens: dict[str, str],
                        conversation_ids: list[int], ws_clients: int, events: int,
                        rng: random.Random) -> EventFigures:
    figures = EventFigures()
    counts: dict[int, int] = defaultdict(int)
    complete: dict[int, asyncio.Event] = defaultdict(asyncio.Event)

    def got(message_id: int) -> None:
        counts[message_id] += 1
        if counts[message_id] == ws_clients:
            complete[message_id].set()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        gate = asyncio.Semaphore(20)

        async def connect(i: int) -> Listener:
            role = ROLES[i % 2]
            async with gate:
                return await _connect(session, listen_base, tokens[role], role)

        listeners = await asyncio.gather(*(connect(i) for i in range(ws_clients)))
        figures.connect_seconds = time.perf_counter() - started
        readers = [asyncio.create_task(_listen(listener, got)) for listener in listeners]
        headers = {"Authorization": f"Bearer {tokens['supervisor']}"}
        try:
            for i in range(events + 5):  # the first 5 warm up
                conversation_id = rng.choice(conversation_ids)
                sent = time.perf_counter()
                async with session.post(f"{post_base}{API}/{conversation_id}/notes",
                                        json={"body": f"bench note {i}"},
                                        headers=headers) as answer:
                    body = await answer.json()
                    if answer.status != 201:
                        raise RuntimeError(f"POST notes: {answer.status} {body}")
                answered = time.perf_counter()
                message_id = body["message_id"]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(complete[message_id].wait(), 5.0)
                if i < 5:
                    continue
                figures.post.append(answered - sent)
                figures.missed += ws_clients - counts[message_id]
                for listener in listeners:
                    if message_id in listener.arrivals:
                        delay = listener.arrivals[message_id] - answered
                        figures.receipt.append(delay)
                        figures.by_role[listener.role].append(delay)
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await asyncio.gather(*(listener.socket.close() for listener in listeners))
    return figures


# -- a run ------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    api: dict[tuple[str, int], dict[str, list[float]]]  # (role, clients) -> endpoint -> seconds
    cpu: dict[tuple[str, int], dict[str, float]]  # the same -> the hub's CPU s per request
    events: dict[str, EventFigures] = field(default_factory=dict)  # setting -> figures


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure_api(base: str, tokens: dict[str, str], seeded: Seeded, deep: str,
                       args: argparse.Namespace, result: SizeResult, n: int) -> None:
    (server,) = multiprocessing.active_children()  # the one `served` started
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            limit=max(args.concurrency))) as session:
        for concurrency in args.concurrency:
            for role in ROLES:
                clients = Clients(base, tokens[role], concurrency, session)
                plan = with_deep_cursor(clients, endpoints(clients, seeded, random.Random(1)),
                                        deep)
                key = (role, concurrency)
                result.api[key], result.cpu[key] = {}, {}
                for name, one in plan.items():
                    before = _cpu_seconds(server.pid or 0)
                    result.api[key][name] = await clients.run(args.requests, one)
                    calls = args.requests + min(args.requests, 2 * concurrency)  # + warm-up
                    result.cpu[key][name] = (_cpu_seconds(server.pid or 0) - before) / calls
                print(f"  {n:,}, {concurrency} clients as {role}: done (load {_load()})",
                      flush=True)


async def one_size(n: int, args: argparse.Namespace, root: Path, with_events: bool) -> SizeResult:
    async with seeded_database("postgresql", n, args.pg_url, root) as (url, seeded, agent):
        tokens = {"agent": agent, "supervisor": await make_supervisor(url)}
        data_dir = root / f"data-{n}"
        deep = await deep_cursor(url, data_dir)
        result = SizeResult({}, {})
        async with served(url, data_dir) as base:
            await _measure_api(base, tokens, seeded, deep, args, result, n)
            if with_events:
                result.events["one process"] = await event_latency(
                    base, base, tokens, seeded.conversation_ids, args.ws_clients, args.events,
                    random.Random(2))
                print(f"  events, one process: done (load {_load()})", flush=True)
        if with_events and not args.no_redis:
            redis = {"redis": {"url": args.redis_url,
                               "queue_prefix": f"bench-{uuid.uuid4().hex[:8]}"}}
            async with served(url, root / f"data-{n}-a", redis) as listen_base, \
                    served(url, root / f"data-{n}-b", redis) as post_base:
                result.events["two processes + Redis"] = await event_latency(
                    listen_base, post_base, tokens, seeded.conversation_ids, args.ws_clients,
                    args.events, random.Random(3))
            print(f"  events, two processes + Redis: done (load {_load()})", flush=True)
        return result


def _ms(values: list[float], q: float | None = None) -> str:
    if not values:
        return "-"
    return f"{(statistics.median(values) if q is None else pct(values, q)) * 1000:.1f}"


def report(sizes: list[int], results: dict[int, SizeResult], concurrencies: list[int]) -> None:
    largest = sizes[-1]
    goal_note = "" if largest >= 100_000 else " (the goal is for 100,000)"
    for concurrency in concurrencies:
        print(f"\nstaff API on PostgreSQL, {concurrency} concurrent client(s), ms; goal: p99 < "
              f"{GOAL_MS:.0f} ms at 100,000{goal_note}")
        header = f"  {'endpoint':<24} {'role':<10}"
        for n in sizes:
            header += f" {f'p50 {n:,}':>12} {f'p99 {n:,}':>12}"
        print(header + f" {'hub CPU/req':>11}  goal")
        names = list(results[largest].api[("agent", concurrency)])
        for name in names:
            for role in ROLES:
                key = (role, concurrency)
                line = f"  {name:<24} {role:<10}"
                for n in sizes:
                    values = results[n].api[key][name]
                    line += f" {_ms(values):>12} {_ms(values, 0.99):>12}"
                line += f" {results[largest].cpu[key][name] * 1000:11.1f}"
                p99 = pct(results[largest].api[key][name], 0.99) * 1000
                print(line + ("  ok" if p99 < GOAL_MS else "  MISS"))
    events = results[largest].events
    if not events:
        return
    print(f"\nevent latency at {largest:,} conversations, ms: POST response (committed) -> event "
          f"frame at each client; goal: p99 < {GOAL_MS:.0f} ms")
    print(f"  {'setting':<22} {'clients':>7} {'events':>6} {'receipts':>8} {'missed':>6} "
          f"{'p50':>7} {'p99':>7} {'max':>7} {'p99 agent':>9} {'p99 sup.':>8} "
          f"{'POST p50':>8} {'POST p99':>8}  goal")
    for setting, f in events.items():
        clients = len(f.receipt) // max(1, len(f.post)) if f.post else 0
        p99 = pct(f.receipt, 0.99) * 1000 if f.receipt else float("inf")
        print(f"  {setting:<22} {clients:>7} {len(f.post):>6} {len(f.receipt):>8} {f.missed:>6} "
              f"{_ms(f.receipt):>7} {_ms(f.receipt, 0.99):>7} "
              f"{max(f.receipt) * 1000 if f.receipt else 0:7.1f} "
              f"{_ms(f.by_role['agent'], 0.99):>9} {_ms(f.by_role['supervisor'], 0.99):>8} "
              f"{_ms(f.post):>8} {_ms(f.post, 0.99):>8}  "
              f"{'ok' if p99 < GOAL_MS and not f.missed else 'MISS'}")
    print("  (connecting the clients, each until its ready frame: " + ", ".join(
        f"{setting} {f.connect_seconds:.1f} s" for setting, f in events.items()) + ")")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1,000 conversations only, 20 WebSocket clients")
    parser.add_argument("-n", type=int, default=100_000, help="conversations")
    parser.add_argument("--requests", type=int, help="requests per endpoint and role "
                                                      "(default 300; 100 with --quick)")
    parser.add_argument("-c", "--concurrency", default="1,10",
                        help="concurrent API clients, one table each (default 1,10)")
    parser.add_argument("--ws-clients", type=int, help="WebSocket clients (default 200; 20 "
                                                       "with --quick)")
    parser.add_argument("--events", type=int, help="notes posted (default 200; 50 with --quick)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-redis", action="store_true", help="skip the two-process run")
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.requests = args.requests or (100 if args.quick else 300)
    args.ws_clients = args.ws_clients or (20 if args.quick else 200)
    args.events = args.events or (50 if args.quick else 200)
    sizes = [1000] if args.quick else sorted({1000, args.n})
    print(f"load average before: {_load()}; {'/'.join(map(str, args.concurrency))} API "
          f"clients, {args.requests} requests per endpoint and role; {args.ws_clients} WebSocket clients, "
          f"{args.events} events", flush=True)
    results: dict[int, SizeResult] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            print(f"{n:,} conversations:", flush=True)
            results[n] = await one_size(n, args, Path(tmp), with_events=n == sizes[-1])
    report(sizes, results, args.concurrency)
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    asyncio.run(main())
