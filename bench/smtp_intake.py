"""SMTP intake throughput: the hub's SMTP server (real spool and intake, SQLite) against a bare
aiosmtpd sink that discards, measured by the same client in the same run.

The client runs in a separate process (smtplib, one thread per concurrent sender) so that it
does not share the servers' event loop. Two modes: a new connection per message, and one
reused connection per sender thread. Prints the rate of 250s (the hub answers 250 once the
mail is committed to its spool) and the hub/sink ratio (goal: >= 0.6), and how long the hub
took until every mail was also worked into a conversation (parsed, threaded, routed, stored).
Figures only; nothing here asserts on timings.

    python bench/smtp_intake.py [-n 1000] [-c 8] [-r 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import smtplib
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

DOMAIN = "city.example"
MODES = ("new", "reused")
BODY = ("Hello,\n\nthe street light in front of number 12 has been out for a week.\n"
        "Could someone please have a look?\n\nThanks,\nAna\n")


def _message(index: int, run: str) -> bytes:
    return (f"From: Ana {index} <ana{index % 50}@example.org>\r\nTo: help@{DOMAIN}\r\n"
            f"Subject: Street light {index}\r\nMessage-ID: <{run}.{index}@example.org>\r\n"
            f"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{BODY}").encode()


def _sender_thread(port: int, indexes: list[int], run: str, reuse: bool,
                   errors: list[str]) -> None:
    client: smtplib.SMTP | None = None
    for index in indexes:
        try:
            if client is None:
                client = smtplib.SMTP("127.0.0.1", port, timeout=60)
            client.sendmail(f"ana{index % 50}@example.org", [f"help@{DOMAIN}"],
                            _message(index, run))
        except smtplib.SMTPException as exc:
            errors.append(type(exc).__name__)
            client = None
        if not reuse and client is not None:
            client.quit()
            client = None
    if client is not None:
        client.quit()


def client_run(port: int, count: int, concurrency: int, reuse: bool, run: str) -> tuple[float,
                                                                                        int]:
    """(seconds, errors) to send `count` messages with `concurrency` threads."""
    errors: list[str] = []
    shares = [list(range(i, count, concurrency)) for i in range(concurrency)]
    threads = [threading.Thread(target=_sender_thread, args=(port, share, run, reuse, errors))
               for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, len(errors)


def _in_process(args: tuple[Any, ...]) -> tuple[float, int]:
    return client_run(*args)


class DiscardHandler:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


async def _measure(pool: Any, port: int, count: int, concurrency: int,
                   reuse: bool) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    run = uuid.uuid4().hex[:8]
    return await loop.run_in_executor(
        None, lambda: pool.apply(_in_process, ((port, count, concurrency, reuse, run),)))


@asynccontextmanager
async def sink_server() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(DiscardHandler(), hostname="sink", loop=loop),
                                      "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def hub_server(workdir: Path) -> AsyncIterator[tuple[int, Any]]:
    from hub.app import Hub
    from hub.config import Settings

    settings = Settings.model_validate({
        "hub": {"data_dir": str(workdir / "data"), "secret_key": "bench"},
        "database": {"url": f"sqlite+aiosqlite:///{workdir / 'hub.db'}"},
        "smtp": {"host": "127.0.0.1", "port": 0, "domains": [DOMAIN]},
        "email": {"acknowledge": False},
        "routing": {"rules_dir": str(workdir / "no-rules"), "watch": False},
    })
    hub = Hub(settings)
    await hub.start()
    try:
        yield hub.adapters.get("email").bound_port, hub
    finally:
        await hub.stop()


@dataclass
class Figures:
    sink: list[float] = field(default_factory=list)  # msg/s per round
    hub: list[float] = field(default_factory=list)
    worked: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    errors: int = 0


async def main(count: int, concurrency: int, rounds: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    figures = {mode: Figures() for mode in MODES}
    with ctx.Pool(1) as pool, tempfile.TemporaryDirectory() as tmp:
        await _measure(pool, 1, 0, 1, True)  # warm the client process up
        async with sink_server() as sink_port, hub_server(Path(tmp)) as (hub_port, hub):
            # Interleaved, so that whatever else the machine does weighs on both alike.
            for _ in range(rounds):
                for mode in MODES:
                    reuse, row = mode == "reused", figures[mode]
                    seconds, errors = await _measure(pool, sink_port, count, concurrency, reuse)
                    row.sink.append(count / seconds)
                    started = time.perf_counter()
                    seconds, more = await _measure(pool, hub_port, count, concurrency, reuse)
                    while hub.spool.backlog:  # noqa: ASYNC110 (a figure to poll, not an event)
                        await asyncio.sleep(0.005)
                    row.hub.append(count / seconds)
                    row.worked.append(count / (time.perf_counter() - started))
                    row.ratios.append(row.hub[-1] / row.sink[-1])
                    row.errors += errors + more
    print(f"SMTP intake, {count} messages per run, {concurrency} concurrent client(s), SQLite, "
          f"median of {rounds} interleaved rounds (min-max of the ratio)")
    print(f"{'mode':<8} {'bare sink msg/s':>16} {'hub 250 msg/s':>14} {'ratio':>6} "
          f"{'(min-max)':>11} {'hub worked msg/s':>17} {'errors':>7}")
    for mode, row in figures.items():
        print(f"{mode:<8} {median(row.sink):16.0f} {median(row.hub):14.0f} "
              f"{median(row.ratios):6.2f} {min(row.ratios):5.2f}-{max(row.ratios):4.2f} "
              f"{median(row.worked):17.0f} {row.errors:7d}")
    print("hub 250 msg/s: mails committed to the spool and answered 250, as the client saw them;"
          "\nhub worked msg/s: the same mails until all were parsed, threaded, routed and stored.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("-r", "--rounds", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.count, options.concurrency, options.rounds))
