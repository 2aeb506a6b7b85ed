"""How long a sender waits for its 250 while the hub is busy working earlier mail, beside a bare
aiosmtpd sink measured by the same clients in the same run.

Two measurements, each on the hub (`hub serve` as shipped, in a child process with its work
process; SQLite or PostgreSQL) and on the sink:
  * latency: one sequential sender (a new connection per mail) while a burst of mail sent just
    before keeps the spool worker busy; p50/p99/max of the time from DATA's end to the 250;
  * sustained rate: 20 concurrent senders for `--seconds`, in both connection modes (a new
    connection per mail, one reused connection per sender); 250s per second and hub/sink.

    python bench/ack_latency.py [--seconds 20] [--burst 2000] [--backend sqlite|postgres]

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
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import PG_URL, fresh_database, shipped_settings, start_relay
from bench.mails import make_mails
from bench.served import child_server, hub_main, on_free_port, rss_bytes
from bench.smtp_intake import sink_server

DOMAIN = "city.example"


def sequential(port: int, mails: list[bytes], seconds: float) -> list[float]:
    """Seconds from DATA to the 250, one mail after another, for `seconds`."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    for raw in mails:
        if time.monotonic() > deadline:
            break
        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
        client.ehlo()
        client.mail("citizen@example.org")
        client.rcpt(f"help@{DOMAIN}")
        started = time.perf_counter()  # DATA's 354 is a loopback round trip: ~0.1 ms
        code, _ = client.data(raw)
        latencies.append(time.perf_counter() - started)
        assert code == 250, code
        client.quit()
    return latencies


def blast(port: int, mails: list[bytes], concurrency: int, reuse: bool,
          seconds: float) -> tuple[int, float]:
    """(250s, seconds): `concurrency` senders send from `mails` until `seconds` are over."""
    counts = [0] * concurrency
    deadline = time.monotonic() + seconds

    def sender(slot: int) -> None:
        client: smtplib.SMTP | None = None
        for raw in mails[slot::concurrency]:
            if time.monotonic() > deadline:
                break
            if client is None:
                client = smtplib.SMTP("127.0.0.1", port, timeout=60)
            try:
                client.sendmail("citizen@example.org", [f"help@{DOMAIN}"], raw)
                counts[slot] += 1
            except smtplib.SMTPException:
                client = None
                continue
            if not reuse:
                client.quit()
                client = None
        if client is not None:
            client.quit()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.perf_counter() - started


def _call(args: tuple[Any, ...]) -> Any:
    name, *rest = args
    return sequential(*rest) if name == "sequential" else blast(*rest)


async def in_child(pool: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, pool.apply, _call, (args,))


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  "
            f"max {ordered[-1] * 1000:7.1f} ms  (n={len(ordered)})")


async def measure(port: int, pools: list[Any], mails: list[bytes], args: Any) -> dict[str, Any]:
    burst = in_child(pools[0], "blast", port, mails[:args.burst], 8, True, 600.0)
    await asyncio.sleep(0.5)  # the burst is in, the worker busy with it
    latencies = await in_child(pools[1], "sequential", port, mails[args.burst:],
                               min(args.seconds, 15.0))
    await burst
    rates = {}
    for reuse in (False, True):
        sent, seconds = await in_child(pools[0], "blast", port, mails, 20, reuse, args.seconds)
        rates["reused" if reuse else "new"] = sent / seconds
    return {"latency": latencies, "rates": rates}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--pg-url", default=PG_URL)
    args = parser.parse_args()
    mails = make_mails(args.burst + 40_000)
    ctx = multiprocessing.get_context("spawn")
    relay, relay_port = start_relay(ctx)
    pools = [ctx.Pool(1), ctx.Pool(1)]
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        async with sink_server() as port:
            sink = await measure(port, pools, mails, args)
        async with fresh_database(args.backend, args.pg_url) as (workdir, url), \
                child_server("hub", hub_main, (on_free_port(shipped_settings(
                    workdir, url, relay_port)),), workdir / "hub.log") as hub:
            rss_start = rss_bytes(hub.pid)
            figures = await measure(hub.port("smtp"), pools, mails, args)
            rss_end = rss_bytes(hub.pid)
    finally:
        for pool in pools:
            pool.terminate()
        relay.terminate()
    print(f"250 latency, one sequential sender while the worker is busy ({args.backend}):")
    print(f"  sink  {summary(sink['latency'])}")
    print(f"  hub   {summary(figures['latency'])}")
    print(f"250s per second, 20 concurrent senders, {args.seconds:g} s:")
    for mode in ("new", "reused"):
        ratio = figures["rates"][mode] / sink["rates"][mode]
        print(f"  {mode:<6} connections: sink {sink['rates'][mode]:7.0f}/s   "
              f"hub {figures['rates'][mode]:7.0f}/s   hub/sink {ratio:.2f}")
    print(f"hub RSS (its processes) {rss_start / 1e6:.0f} MB at start, {rss_end / 1e6:.0f} MB "
          "at end; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
