"""One citizen's 250s while others send hostile MIME: the latency of a sequential sender's SMTP
answers at the hub, alone and while other connections send 1,000-level nested multipart mails
(which take Python's email parser seconds each), beside a bare aiosmtpd sink measured by the
same client in the same run. The hub also works every mail (parse in its parse process,
intake, routing) during the run. Figures only; nothing here asserts on timings.

    python bench/hostile_mime.py [-n 200] [-k 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import smtplib
import sys
import tempfile
import time
from pathlib import Path
from statistics import median, quantiles
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_intake import DOMAIN, _message, hub_server, sink_server


def nested_mail(depth: int, index: int) -> bytes:
    opening = "".join(f'--l{i}\r\nContent-Type: multipart/mixed; boundary="l{i + 1}"\r\n\r\n'
                      for i in range(depth))
    closing = "".join(f"--l{i}--\r\n" for i in reversed(range(depth + 1)))
    return (f"From: x{index}@example.net\r\nTo: help@{DOMAIN}\r\nSubject: deep {index}\r\n"
            f"Message-ID: <deep.{index}.{time.time_ns()}@example.net>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="l0"\r\n\r\n{opening}--l{depth}\r\n'
            f"Content-Type: text/plain\r\n\r\ndeep\r\n{closing}").encode()


def sequential_latencies(port: int, count: int, run: str) -> list[float]:
    """Seconds from DATA's end to the 250, per mail, one connection, one mail at a time."""
    latencies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo()
        for index in range(count):
            raw = _message(index, run)
            client.mail(f"ana{index % 50}@example.org")
            client.rcpt(f"help@{DOMAIN}")
            started = time.perf_counter()
            code, _ = client.data(raw)
            latencies.append(time.perf_counter() - started)
            assert code == 250, code
    return latencies


def hostile_sender(port: int, count: int, offset: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        for index in range(count):
            client.sendmail("x@example.net", [f"help@{DOMAIN}"], nested_mail(1000, offset + index))
    return count


def _call(args: tuple[Any, ...]) -> Any:
    function, *rest = args
    return function(*rest)


def figures(latencies: list[float]) -> str:
    ms = [x * 1000 for x in latencies]
    p99 = quantiles(ms, n=100)[98] if len(ms) > 1 else ms[0]
    return f"p50 {median(ms):7.2f} ms   p99 {p99:7.2f} ms   max {max(ms):7.2f} ms"


async def main(count: int, hostile: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with ctx.Pool(1 + hostile) as pool, tempfile.TemporaryDirectory() as tmp:
        def run(*args: Any) -> Any:
            return loop.run_in_executor(None, lambda: pool.apply(_call, (args,)))

        async with sink_server() as sink_port, hub_server(Path(tmp)) as (hub_port, hub):
            sink = await run(sequential_latencies, sink_port, count, "sink")
            alone = await run(sequential_latencies, hub_port, count, "alone")
            started = time.perf_counter()
            attack = [run(hostile_sender, hub_port, 5, 1000 * k) for k in range(hostile)]
            under = await run(sequential_latencies, hub_port, count, "under")
            sent = sum(await asyncio.gather(*attack))
            while hub.spool.backlog:  # noqa: ASYNC110 (a figure to poll, not an event)
                await asyncio.sleep(0.01)
            worked = time.perf_counter() - started
    print(f"one sequential sender, {count} mails; {hostile} other connections sending "
          f"{sent} mails of 1,000 nested multipart levels (SQLite, parse in a child process)")
    print(f"bare sink                     {figures(sink)}")
    print(f"hub, alone                    {figures(alone)}")
    print(f"hub, while hostile MIME flows {figures(under)}")
    print(f"every mail worked into a conversation {worked:.1f} s after the attack began")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=200)
    parser.add_argument("-k", "--hostile", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.count, options.hostile))
