"""Web chat under load (issue #16): N concurrent visitors on `/chat/ws`, each sending messages
while a staff client answers every conversation through the API, beside a bare aiohttp
WebSocket echo server measured in the same run on the same machine.

The hub runs in a child process (embedded SQLite by default, `--pg-url` for PostgreSQL) with the
webchat channel, its limits raised out of the way (every visitor comes from 127.0.0.1), and
deliveries in process. The clients run in this process:

  visitors    N WebSockets, each `hello`, then M `message` frames one after the other (each
              waits for its `ack`, which leaves the hub only after the commit)
  staff       one `GET /api/v1/events` socket (supervisor); every `message.inbound` of a new
              conversation is answered with `POST .../replies` (up to 16 at once)

Figures: messages/s (acks per second over the sending phase), ack latency, citizen message ->
staff event (the frame's send to the staff socket's `message.inbound` with its message id) and
staff reply -> widget (the POST's start to the visitor's `message` frame with that id), p50 and
p99. The echo server: the same N sockets and M round trips each, p50/p99 and round trips/s.

Usage: python bench/webchat.py [-n 500] [--messages 3] [--pg-url postgresql+asyncpg://...]
Prints figures only; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web

ORIGIN = "http://127.0.0.1:8080"
REPLIERS = 16


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# -- the servers (child processes) ------------------------------------------------------------


def serve_hub(url: str, data_dir: str, conn: Connection) -> None:
    asyncio.run(_serve_hub(url, data_dir, conn))


async def _serve_hub(url: str, data_dir: str, conn: Connection) -> None:
    from hub.app import Hub
    from hub.auth import create_token
    from hub.config import Settings
    from hub.staff import add_staff
    from hub.web.app import create_app

    settings = Settings.model_validate({
        "hub": {"data_dir": data_dir, "secret_key": "bench", "public_url": ORIGIN},
        "database": {"url": url}, "smtp": {"enabled": False}, "email": {"acknowledge": False},
        "routing": {"rules_dir": str(Path(data_dir) / "none"), "watch": False},
        "security": {"api_rate_per_minute": 10_000_000},
        "webchat": {"per_minute": 10_000, "per_ip_per_minute": 10_000_000,
                    "max_connections_per_ip": 100_000}})
    hub = Hub(settings)
    await hub.start(listeners=False)
    async with hub.db.transaction() as session:
        staff = await add_staff(session, "sup@city.example", name="Sup", role="supervisor",
                                queues=["general"])
        token = await create_token(session, staff)
    runner = web.AppRunner(create_app(hub), access_log=None)
    await _run(runner, conn, token)
    await hub.stop()


def serve_echo(conn: Connection) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.type == aiohttp.WSMsgType.TEXT:
                await socket.send_str(message.data)
        return socket

    app = web.Application()
    app.router.add_get("/echo", echo)
    asyncio.run(_run(web.AppRunner(app, access_log=None), conn, ""))


async def _run(runner: web.AppRunner, conn: Connection, token: str) -> None:
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    conn.send((sockets[0].getsockname()[1], token))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await runner.cleanup()


class Child:
    def __init__(self, target: Any, *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.parent, child = context.Pipe()
        self.process = context.Process(target=target, args=(*args, child), daemon=True)

    async def __aenter__(self) -> tuple[str, str]:
        self.process.start()
        port, token = await asyncio.get_running_loop().run_in_executor(None, self.parent.recv)
        return f"http://127.0.0.1:{port}", token

    async def __aexit__(self, *exc: object) -> None:
        self.parent.send("stop")
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Timings:
    sent: dict[str, float] = field(default_factory=dict)  # client_id -> when sent
    acked: dict[int, str] = field(default_factory=dict)  # message id -> client_id
    ack_seconds: list[float] = field(default_factory=list)
    staff_heard: dict[int, float] = field(default_factory=dict)  # message id -> when heard
    replied: dict[int, float] = field(default_factory=dict)  # reply id -> when POSTed
    post_seconds: list[float] = field(default_factory=list)  # the reply POST's round trip
    widget_got: dict[int, float] = field(default_factory=dict)  # reply id -> when pushed
    elapsed: float = 0.0  # the sending phase: first message to last ack
    expected: int = 0  # messages to be acked (visitors x messages)
    visitors: int = 0
    all_acked: asyncio.Event = field(default_factory=asyncio.Event)
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)


async def visitor(http: aiohttp.ClientSession, base: str, messages: int, timings: Timings,
                  ready: asyncio.Barrier, done: asyncio.Event) -> None:
    async with http.ws_connect(f"{base}/chat/ws", headers={"Origin": ORIGIN}) as socket:
        await socket.send_json({"v": 1, "type": "hello"})
        await socket.receive_json()
        await ready.wait()
        for _ in range(messages):
            cid = uuid.uuid4().hex
            timings.sent[cid] = time.perf_counter()
            await socket.send_json({"v": 1, "type": "message", "client_id": cid,
                                    "body": "The streetlight outside number 12 is out."})
            while (frame := await socket.receive_json())["type"] != "ack":
                _pushed(frame, timings)
            timings.ack_seconds.append(time.perf_counter() - timings.sent[cid])
            timings.acked[frame["id"]] = cid
            if len(timings.acked) >= timings.expected:
                timings.all_acked.set()
        while not done.is_set():
            try:
                _pushed(await socket.receive_json(timeout=0.5), timings)
            except TimeoutError:
                continue


def _pushed(frame: dict[str, Any], timings: Timings) -> None:
    if frame["type"] == "message" and frame["direction"] == "outbound":
        timings.widget_got[frame["id"]] = time.perf_counter()
        if len(timings.widget_got) >= timings.visitors:
            timings.all_answered.set()


async def staff(http: aiohttp.ClientSession, base: str, token: str, timings: Timings,
                subscribed: asyncio.Event, done: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    replies: set[asyncio.Task[None]] = set()
    limit = asyncio.Semaphore(REPLIERS)

    async def reply(conversation_id: int) -> None:
        async with limit:
            started = time.perf_counter()
            async with http.post(f"{base}/api/v1/conversations/{conversation_id}/replies",
                                 json={"body": "We have sent a crew."}, headers=headers) as r:
                timings.replied[(await r.json())["message_id"]] = started
            timings.post_seconds.append(time.perf_counter() - started)

    async with http.ws_connect(f"{base}/api/v1/events", headers=headers) as socket:
        await socket.receive_json()
        subscribed.set()
        while not done.is_set():
            try:
                event = await socket.receive_json(timeout=0.5)
            except TimeoutError:
                continue
            if event["kind"] == "message.inbound":
                timings.staff_heard[event["message_id"]] = time.perf_counter()
                if event.get("new_conversation"):
                    task = asyncio.create_task(reply(event["conversation_id"]))
                    replies.add(task)
                    task.add_done_callback(replies.discard)
        await asyncio.gather(*replies)


async def run_hub(base: str, token: str, n: int, messages: int) -> Timings:
    timings = Timings(expected=n * messages, visitors=n)
    done, subscribed = asyncio.Event(), asyncio.Event()
    ready = asyncio.Barrier(n + 1)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        staff_task = asyncio.create_task(staff(http, base, token, timings, subscribed, done))
        await subscribed.wait()
        visitors = [asyncio.create_task(visitor(http, base, messages, timings, ready, done))
                    for _ in range(n)]
        await ready.wait()
        started = time.perf_counter()
        await timings.all_acked.wait()
        timings.elapsed = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):  # a reply lost is counted below, not waited for
            await asyncio.wait_for(timings.all_answered.wait(), 30)
        done.set()
        await asyncio.gather(staff_task, *visitors)
    return timings


async def run_echo(base: str, n: int, messages: int) -> tuple[list[float], float]:
    rounds: list[float] = []

    async def one(http: aiohttp.ClientSession, ready: asyncio.Barrier) -> None:
        async with http.ws_connect(f"{base}/echo") as socket:
            await ready.wait()
            for _ in range(messages):
                started = time.perf_counter()
                await socket.send_json({"v": 1, "type": "message", "body": "x" * 40})
                await socket.receive_json()
                rounds.append(time.perf_counter() - started)

    ready = asyncio.Barrier(n + 1)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        tasks = [asyncio.create_task(one(http, ready)) for _ in range(n)]
        await ready.wait()
        started = time.perf_counter()
        await asyncio.gather(*tasks)
    return rounds, time.perf_counter() - started


def report(n: int, messages: int, timings: Timings, echo: list[float], echo_s: float) -> None:
    elapsed = timings.elapsed
    sent_at = {mid: timings.sent[cid] for mid, cid in timings.acked.items()}
    to_staff = [heard - sent_at[mid] for mid, heard in timings.staff_heard.items()
                if mid in sent_at]
    to_widget = [got - timings.replied[mid] for mid, got in timings.widget_got.items()
                 if mid in timings.replied]
    print(f"\n{n} visitors x {messages} messages, one staff client answering each conversation")
    print(f"{'':34}{'p50 ms':>10}{'p99 ms':>10}{'count':>8}")
    rows = (("hub: message -> ack", timings.ack_seconds),
            ("hub: message -> staff event", to_staff),
            ("hub: staff reply POST (202)", timings.post_seconds),
            ("hub: staff reply -> widget", to_widget),
            ("bare echo: round trip", echo))
    for label, values in rows:
        print(f"{label:34}{pct(values, 0.5):10.1f}{pct(values, 0.99):10.1f}{len(values):8}")
    print(f"hub: {len(timings.acked) / elapsed:,.0f} messages/s (acked after commit); "
          f"bare echo: {len(echo) / echo_s:,.0f} round trips/s; "
          f"replies delivered to widgets: {len(to_widget)}/{n}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="concurrent visitors")
    parser.add_argument("--messages", type=int, default=3, help="messages per visitor")
    parser.add_argument("--pg-url", default="", help="a PostgreSQL database URL (migrated at "
                        "start; default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        url = args.pg_url or f"sqlite+aiosqlite:///{Path(root) / 'chat.db'}"
        async with Child(serve_echo) as (echo_base, _):
            echo, echo_s = await run_echo(echo_base, args.n, args.messages)
        async with Child(serve_hub, url, root) as (base, token):
            timings = await run_hub(base, token, args.n, args.messages)
    report(args.n, args.messages, timings, echo, echo_s)


if __name__ == "__main__":
    asyncio.run(main())
