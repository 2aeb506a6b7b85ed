"""Steady state: mail arriving at a steady rate (50/s) for a minute, each a new conversation; how
long from its 250 until staff see it in the API, whether the hub keeps up, and its memory.

The hub is `hub serve` in a child process (shipped configuration: acknowledgments on, the
repository's `routing_rules/`, embedded jobs in its work process delivering to a local sink
relay), its HTTP API included. A
child process sends at the set pace and records each mail's 250; the bench polls
`GET /api/v1/conversations` as a staff member's screen would (every 50 ms) and notes when each
subject first shows. At the end: p50/p99/max from 250 to visible, the same by 10 s window of
the run (is the tail one moment or all along?), the spool backlog, the RSS of the hub at start
and end, and its memory by process every `--rss-every` seconds (is it flat over a 5-minute
run: `--seconds 300`?).

A hub that has just started works its first mail only once its work process is up and its
parse process warm (under a second here). That is a start, not a steady state: the paced run
begins when a first mail is visible, and how long that took is printed on its own. `--cold`
paces from the moment the hub listens, as a restart under load would.

    python bench/steady.py [--rate 50] [--seconds 60] [--rss-every 30] [--cold]
                           [--backend sqlite|postgres]

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
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import PG_URL, fresh_database, shipped_settings, start_relay
from bench.served import child_server, hub_main, on_free_port, rss_by_role
from bench.staff_api import make_supervisor

POLL_SECONDS = 0.05
WARM_UP = "Warm-up"


def first_mail(port: int) -> float:
    """One mail to a hub that has just started listening; the time of its 250."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
    client.sendmail("early@example.org", ["help@city.example"],
                    f"From: early@example.org\r\nTo: help@city.example\r\nSubject: {WARM_UP}\r\n"
                    "Message-ID: <warm-up@example.org>\r\n\r\nThe first mail after a start, "
                    "the street lights are out.\r\n".encode())
    client.quit()
    return time.time()


def paced_sender(port: int, rate: float, seconds: float) -> dict[int, float]:
    """Mail i at start + i/rate; returns {i: time.time() of its 250}."""
    acked: dict[int, float] = {}
    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
    start = time.time()
    for index in range(int(rate * seconds)):
        delay = start + index / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        raw = (f"From: Resident {index} <resident{index}@example.org>\r\n"
               f"To: help@city.example\r\nSubject: Steady {index}\r\n"
               f"Message-ID: <steady-{index}@example.org>\r\n\r\n"
               f"The bin on street {index} was not collected.\r\n").encode()
        client.sendmail(f"resident{index}@example.org", ["help@city.example"], raw)
        acked[index] = time.time()
    client.quit()
    return acked


async def pending(url: str) -> int:
    """Spool items not yet worked."""
    from sqlalchemy import func, select

    from hub.storage.db import Database
    from hub.storage.tables import SpoolEntry

    db = Database(url)
    try:
        async with db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(SpoolEntry)
                                            .where(SpoolEntry.state == "pending")) or 0)
    finally:
        await db.dispose()


async def stored_among(url: str, indexes: list[int]) -> list[int]:
    """Which of these mails are stored messages (the watcher sees only the newest 100)."""
    from sqlalchemy import select

    from hub.storage.db import Database
    from hub.storage.tables import Message

    db = Database(url)
    try:
        async with db.read() as session:
            # The email channel's provider id: the bare Message-ID, "|", the sender.
            found = await session.scalars(select(Message.provider_id).where(
                Message.provider_id.like("steady-%")))
            stored = {int(key.split("@", 1)[0].removeprefix("steady-")) for key in found if key}
            return sorted(stored & set(indexes))
    finally:
        await db.dispose()


async def watch(base: str, token: str, seen: dict[int, float], stop: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        while not stop.is_set():
            async with http.get(f"{base}/api/v1/conversations", params={"limit": "100"}) as resp:
                body = await resp.json()
            now = time.time()
            for item in body.get("items", []):
                subject = item.get("subject") or ""
                if subject.startswith("Steady "):
                    seen.setdefault(int(subject.split()[1]), now)
                elif subject == WARM_UP:
                    seen.setdefault(-1, now)
            await asyncio.sleep(POLL_SECONDS)


async def sample_memory(pid: int, every: float, samples: list[tuple[float, dict[str, int]]],
                        stop: asyncio.Event) -> None:
    """(seconds since start, RSS by role) every `every` seconds until `stop`."""
    started = time.monotonic()
    while True:
        samples.append((time.monotonic() - started, rss_by_role(pid)))
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            continue


def print_memory(samples: list[tuple[float, dict[str, int]]]) -> None:
    roles = sorted({role for _, by_role in samples for role in by_role})
    print(f"  RSS by process (MB): {'t (s)':>6}" + "".join(f"{role:>8}" for role in roles)
          + f"{'all':>8}")
    for at, by_role in samples:
        print(f"  {'':21} {at:6.0f}" + "".join(f"{by_role.get(role, 0) / 1e6:8.0f}"
                                                for role in roles)
              + f"{sum(by_role.values()) / 1e6:8.0f}")


def print_windows(acked: dict[int, float], seen: dict[int, float], width: float = 10.0) -> None:
    """p50/max of 250 -> visible by when the mail was sent: is the tail one moment or all along?"""
    start = min(acked.values())
    windows: dict[int, list[float]] = {}
    for index, at in acked.items():
        if index in seen:
            windows.setdefault(int((at - start) // width), []).append(seen[index] - at)
    print(f"  by {width:g} s window of sending (ms): " + "; ".join(
        f"{int(key * width)}s p50 {statistics.median(delays) * 1000:.0f} "
        f"max {max(delays) * 1000:.0f}" for key, delays in sorted(windows.items())))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rss-every", type=float, default=30.0,
                        help="seconds between memory samples")
    parser.add_argument("--cold", action="store_true",
                        help="pace from the moment the hub listens, as after a restart under "
                             "load (default: from when its first mail is visible)")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    relay, relay_port = start_relay(ctx)
    print(f"steady {args.rate:g} mails/s for {args.seconds:g} s on {args.backend}, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    try:
        with ctx.Pool(1) as pool:
            async with fresh_database(args.backend, args.pg_url) as (workdir, url):
                settings = on_free_port(shipped_settings(workdir, url, relay_port))
                token = await make_supervisor(settings.database.url)
                async with child_server("hub", hub_main, (settings,),
                                        workdir / "hub.log") as hub:
                    seen: dict[int, float] = {}
                    stop = asyncio.Event()
                    watcher = asyncio.create_task(watch(hub.url, token, seen, stop))
                    memory: list[tuple[float, dict[str, int]]] = []
                    sampler = asyncio.create_task(
                        sample_memory(hub.pid, args.rss_every, memory, stop))
                    first = first_mail(hub.port("smtp"))
                    deadline = time.time() + 60
                    while -1 not in seen and not args.cold and time.time() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)  # the watcher fills `seen`; we only wait
                    acked = await asyncio.get_running_loop().run_in_executor(
                        None, pool.apply, paced_sender, (hub.port("smtp"), args.rate,
                                                         args.seconds))
                    deadline = time.time() + 30
                    while len(seen) < len(acked) and time.time() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)  # the watcher fills `seen`; we only wait
                    stop.set()
                    await watcher
                    await sampler
                    backlog = await pending(url)
                    unseen = sorted(set(acked) - set(seen))
                    unseen_stored = await stored_among(url, unseen) if unseen else []
    finally:
        relay.terminate()
    print(f"  a just-started hub's first mail: 250 -> visible {(seen[-1] - first) * 1000:.0f} ms"
          + ("; paced sending began at once (--cold)" if args.cold
             else "; paced sending began after it was visible"))
    delays = sorted(seen[i] - acked[i] for i in acked if i in seen)
    missing = len(acked) - len(delays)
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    sent_rate = len(acked) / (max(acked.values()) - min(acked.values()) or 1)
    print(f"  sent {len(acked)} mails at {sent_rate:.1f}/s; not visible after 30 s: {missing}"
          + (f" (stored all the same: {len(unseen_stored)}, e.g. {unseen_stored[:5]}; the API "
             "lists the newest activity first and the watcher reads its first 100)"
             if missing else ""))
    print(f"  250 -> visible in the API: p50 {statistics.median(delays) * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms "
          f"(the API is polled every {POLL_SECONDS * 1000:.0f} ms)")
    print_windows(acked, seen)
    print(f"  spool backlog at the end: {backlog}")
    rss_start, rss_end = (sum(memory[i][1].values()) for i in (0, -1))
    print(f"  hub RSS (its processes): {rss_start / 1e6:.0f} MB at start, {rss_end / 1e6:.0f} MB "
          "at end; "
          f"load average {os.getloadavg()[0]:.2f}")
    print_memory(memory)


if __name__ == "__main__":
    asyncio.run(main())
