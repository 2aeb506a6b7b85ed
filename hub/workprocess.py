"""Embedded mode's work process: `hub serve` answers, a child of it works.

Without Redis, `hub serve` used to do everything on one event loop: answer senders (the SMTP
250, a webhook's 200, pages, sockets) and, on the same interpreter, parse, route, store and
deliver what they sent. A 250 then waited for whatever batch of work held the loop, and only one
of the machine's cores did the work. With `[hub] work_process` (the default) `hub serve` starts
one child, `python -m hub.workprocess`, that runs the spool worker, delivery and upkeep on the
other core, against the same database, while the serving process only commits what arrives.
Nothing about the guarantees changes: an item is on disk before it is acknowledged and worked
from there, whichever process works it.

The two talk over one Unix socket pair, in length-prefixed JSON frames ("t" says what):

  serve -> work: `settings` (first; pickled, with the version of the rules it tested),
                 `spooled` (the running count of items spooled: wake up), `deliver` (outbox
                 ids committed here), `presence` (staff online here), `metrics` (asks for the
                 child's exposition), `stop`
  work -> serve: `ready`, `event` (the child's hub events, for live views), `backlog` (pending
                 items, and the running count it has seen), `metrics`

The child dies with its parent (PR_SET_PDEATHSIG on Linux, and the socket's end elsewhere), so
a killed `hub serve` never leaves a second worker behind. `hub serve` launches the child first,
so that it imports while the database is migrated, sends it its settings once that is done, and
does not wait for it to come up (what arrives meanwhile is spooled and worked once it is up); it
starts it again whenever it ends by itself. The child does not run the rules' tests again for
the version `hub serve` tested, and readies its parse process while it reads the rules. Ids
handed over while no child runs are kept and sent to the next one (and the outbox sweeper
finds them anyway).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import logging
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub import metrics
from hub.events import Event, EventBus

if TYPE_CHECKING:
    from hub.app import Hub
    from hub.config import Settings

log = logging.getLogger(__name__)
FRAME = struct.Struct("!I")
MAX_FRAME = 16 * 1024 * 1024
START_SECONDS = 60.0  # the child imports and reads the rule folder (its parse process warms after)
STOP_SECONDS = 30.0  # sends under way finish and are recorded
RESTART_SECONDS = 1.0
REPORT_SECONDS = 0.2
METRICS_SECONDS = 2.0
PR_SET_PDEATHSIG = 1
# Below `hub serve`, so a 250 goes first, but not far below: at 10 the work and its parse
# process (which inherits it) got so little CPU during a burst that ingest ran 5-15% slower
# (bench/ingest.py), while 5 keeps the 250's latency and rate goals (bench/ack_latency.py).
NICENESS = 5


class WorkProcessFailed(Exception):
    """The work process did not come up (it is started again a second later)."""


class Link:
    """Framed JSON messages both ways over one stream. Sending never waits (the transport
    buffers); a closed link drops what is sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, what: str, /, **fields: Any) -> bool:
        if self.writer.is_closing():
            return False
        data = json.dumps({"t": what, **fields}).encode()
        self.writer.write(FRAME.pack(len(data)) + data)
        return True

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the other side is gone."""
        try:
            (size,) = FRAME.unpack(await self.reader.readexactly(FRAME.size))
            if size > MAX_FRAME:
                raise ValueError(f"a frame of {size} bytes")
            message = json.loads(await self.reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return None
        return message if isinstance(message, dict) else None

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def _event(message: dict[str, Any]) -> Event:
    return Event(str(message["kind"]), int(message["conversation_id"]), message.get("queue"),
                 dict(message.get("data") or {}))


# -- the serving side -------------------------------------------------------------------------

class LinkJobs:
    """`hub serve`'s jobs when a work process delivers: ids go to it (hub.jobs.Jobs)."""

    def __init__(self, work: WorkProcess) -> None:
        self.work = work

    def submit_delivery(self, outbox_ids: Sequence[int]) -> None:
        self.work.deliver(outbox_ids)

    async def enqueue_delivery(self, outbox_ids: Sequence[int]) -> int:
        self.work.deliver(outbox_ids)
        return len(outbox_ids)

    async def drain(self) -> None:
        return None


class WorkProcess:
    """The serving side: starts the child, feeds it, hears it, starts it again if it ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jobs = LinkJobs(self)
        self._hub: Hub | None = None
        self._link: Link | None = None
        self._launched: Link | None = None  # a child started early, not yet sent its settings
        self._process: asyncio.subprocess.Process | None = None
        self._waiting_ids: set[int] = set()  # handed over while no child was there
        self._spooled = 0  # items this process spooled, running count
        self._seen = 0  # of those, how many the child has counted
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._metrics: asyncio.Future[str] | None = None

    async def start(self, hub: Hub) -> None:
        self._hub = hub
        hub.spool.on_new = self._spool_grew
        hub.work_process = self
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._forward_presence()))
        # Not waited for: `hub serve` answers (and spools) while the child comes up.
        self._tasks.append(loop.create_task(self._keep_up()))

    async def _keep_up(self) -> None:
        """Start the child, again and again until it comes up (each failure logged)."""
        while not self._stopping:
            try:
                await self._spawn()
                return
            except (WorkProcessFailed, OSError) as exc:
                log.error("the work process did not start (%s); again in %.0f s", exc,
                          RESTART_SECONDS)
            await asyncio.sleep(RESTART_SECONDS)

    async def launch(self) -> None:
        """Starts the child before `start`, so that it imports (most of its start-up) while this
        process migrates the database and reads its rules. It touches nothing until `start`
        sends its settings."""
        if self._launched is None:
            try:
                self._launched = await self._exec()
            except OSError as exc:  # `start` tries again, and again, as for any failed start
                log.error("the work process could not be launched (%s)", exc)

    async def _exec(self) -> Link:
        serving, working = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hub.workprocess", str(working.fileno()),
                pass_fds=(working.fileno(),))
        finally:
            working.close()
        reader, writer = await asyncio.open_unix_connection(sock=serving)
        return Link(reader, writer)

    async def _spawn(self) -> None:
        link, self._launched = self._launched or await self._exec(), None
        link.send("settings", pickled=base64.b64encode(pickle.dumps(self.settings)).decode(),
                  rules=self._hub.rules.version if self._hub and self._hub.rules else None)
        try:
            async with asyncio.timeout(START_SECONDS):
                ready = await link.receive()
        except TimeoutError:
            ready = None
        if ready is None or ready.get("t") != "ready":
            await link.close()
            await self._end_process()
            raise WorkProcessFailed("it ended or did not answer; see the lines above")
        self._link = link
        self._tasks.append(asyncio.get_running_loop().create_task(self._hear(link)))
        self._send_presence()
        self._spool_grew()  # it looks at the spool on start anyway; this gives it our count
        if self._waiting_ids:
            self.deliver(sorted(self._waiting_ids))
            self._waiting_ids.clear()

    async def _hear(self, link: Link) -> None:
        while (message := await link.receive()) is not None:
            self._take(message)
        if self._link is link:
            self._link = None
        await link.close()
        if self._stopping:
            return
        code = await self._end_process()
        log.error("the work process ended (exit code %s); starting it again", code)
        await asyncio.sleep(RESTART_SECONDS)
        await self._keep_up()

    def _take(self, message: dict[str, Any]) -> None:
        kind = message.get("t")
        try:
            if kind == "event" and self._hub is not None:
                self._hub.events.deliver(_event(message))
            elif kind == "backlog" and self._hub is not None:
                self._seen = int(message["seen"])
                self._hub.spool.backlog = int(message["pending"]) + max(0, self._spooled
                                                                         - self._seen)
                metrics.SPOOL_PENDING.set(self._hub.spool.backlog)  # this one's gauge wins
            elif kind == "metrics" and self._metrics is not None and not self._metrics.done():
                self._metrics.set_result(str(message["text"]))
        except (KeyError, TypeError, ValueError):
            log.warning("ignored a malformed %r message from the work process", kind)

    def _spool_grew(self) -> None:
        if self._hub is not None:
            self._spooled = self._hub.spool.added
        if self._link is not None:
            self._link.send("spooled", total=self._spooled)

    def deliver(self, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        if self._link is None or not self._link.send("deliver", ids=[int(i) for i in outbox_ids]):
            self._waiting_ids.update(int(i) for i in outbox_ids)

    async def _forward_presence(self) -> None:
        """Who of the staff is online is known here (their sockets); the child routes with it."""
        from hub.presence import STAFF_PRESENCE

        assert self._hub is not None
        events = self._hub.events.subscribe()
        try:
            while True:
                if (await events.get()).kind == STAFF_PRESENCE:
                    self._send_presence()
        finally:
            self._hub.events.unsubscribe(events)

    def _send_presence(self) -> None:
        from hub.presence import presence_of

        if self._hub is not None and self._link is not None:
            self._link.send("presence", staff=sorted(presence_of(self._hub).local))

    async def child_metrics(self) -> str | None:
        """The child's metrics in the text exposition format (None if it does not answer)."""
        if self._link is None:
            return None
        self._metrics = asyncio.get_running_loop().create_future()
        self._link.send("metrics")
        try:
            async with asyncio.timeout(METRICS_SECONDS):
                return await self._metrics
        except TimeoutError:
            return None

    async def stop(self) -> None:
        self._stopping = True
        if self._link is not None:
            self._link.send("stop")
        elif self._process is not None and self._process.returncode is None:
            self._process.terminate()  # still coming up: it has nothing to finish
        if self._launched is not None:
            await self._launched.close()
            self._launched = None
        await self._end_process(STOP_SECONDS)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._link is not None:
            await self._link.close()
            self._link = None

    async def _end_process(self, patience: float = 0.0) -> int | None:
        process = self._process
        if process is None:
            return None
        try:
            async with asyncio.timeout(patience or 0.001):
                return await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await process.wait()


def merged_metrics(own: bytes, child: str | None) -> bytes:
    """One exposition of both processes' metrics: counters and histograms added up; a gauge
    both set is this process's (the child's where only it has one)."""
    if not child:
        return own
    families: dict[str, Any] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in (own.decode(), child):  # this process first: its gauges win
        for family in text_string_to_metric_families(text):
            families.setdefault(family.name, family)
            samples = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in samples:
                    samples[key] = sample.value
                elif family.type in ("counter", "histogram") and not sample.name.endswith(
                        "_created"):
                    samples[key] += sample.value
    lines: list[str] = []
    for name, family in families.items():
        lines.append(f"# HELP {name} {_escape(family.documentation)}")
        lines.append(f"# TYPE {name} {family.type}")
        for (sample_name, labels), value in values[name].items():
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{sample_name}{{{shown}}} {float(value)!r}" if shown
                         else f"{sample_name} {float(value)!r}")
    return ("\n".join(lines) + "\n").encode()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


# -- the working side -------------------------------------------------------------------------

class LinkRelay:
    """The child's events go to `hub serve`, whose live views are there (hub.events)."""

    def __init__(self, bus: EventBus, link: Link) -> None:
        self.link = link
        bus.relay = self  # type: ignore[assignment]

    def send(self, event: Event) -> None:
        if not self.link.send("event", kind=event.kind, conversation_id=event.conversation_id,
                              queue=event.queue, data=event.data):
            metrics.EVENTS_DROPPED.labels("parent_gone").inc()

    async def listen(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Child:
    """The working side of the link."""

    def __init__(self, hub: Hub, link: Link) -> None:
        self.hub = hub
        self.link = link
        self.counted = 0  # the serving side's running count of spooled items, as last heard
        self.stop = asyncio.Event()

    async def hear(self) -> None:
        from hub.presence import presence_of

        while (message := await self.link.receive()) is not None:
            kind = message.get("t")
            if kind == "spooled":
                self._spooled(int(message.get("total", 0)))
            elif kind == "deliver":
                self.hub.jobs.submit_delivery([int(i) for i in message.get("ids", ())])
            elif kind == "presence":
                presence_of(self.hub).local = Counter(
                    {int(i): 1 for i in message.get("staff", ())})
            elif kind == "metrics":
                self.link.send("metrics", text=generate_latest(metrics.REGISTRY).decode())
            elif kind == "stop":
                break
        self.stop.set()  # told to, or the serving side is gone

    def _spooled(self, total: int) -> None:
        spool = self.hub.spool
        spool.backlog += max(0, total - self.counted)
        self.counted = max(self.counted, total)
        spool.last_put = time.monotonic()  # arrivals go on: small batches (hub.spool)
        if spool.on_new is not None:
            spool.on_new()

    async def report(self) -> None:
        """What the serving side refuses new items by (`[spool] max_backlog`)."""
        last: tuple[int, int] | None = None
        while True:
            now = (self.hub.spool.backlog, self.counted)
            if now != last:
                self.link.send("backlog", pending=now[0], seen=now[1])
                last = now
            await asyncio.sleep(REPORT_SECONDS)


async def _work(fd: int) -> int:
    from hub.app import Hub
    from hub.cli import configure_logging
    from hub.gc_tuning import tune_after_start
    from hub.spool import WorkPolicy

    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    link = Link(reader, writer)
    first = await link.receive()
    if first is None or first.get("t") != "settings":
        return 2
    # The socket pair is private to our parent, which sent its own Settings object.
    settings = pickle.loads(base64.b64decode(first["pickled"]))  # noqa: S301
    configure_logging(settings)
    hub = Hub(settings)
    hub.spool_worker.warm()  # the parse process comes up on the other core while rules load
    LinkRelay(hub.events, link)
    # Nobody answers senders on this loop: no quiet gap to wait for, no pause between batches;
    # batches stay small while items arrive, so SQLite's write lock is let go of often.
    hub.spool_worker.policy = WorkPolicy(quiet=settings.spool.quiet_ms / 1000, max_delay=0.0,
                                         share=1.0)
    tested = first.get("rules")
    await hub.prepare(leading=False, rules_tested=tested if isinstance(tested, str) else None)
    await hub.start(listeners=False, work=True, prepared=True)
    tune_after_start()
    child = _Child(hub, link)
    link.send("ready")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, child.stop.set)  # a service manager stops us all
    tasks = [loop.create_task(child.hear()), loop.create_task(child.report())]
    try:
        await child.stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await hub.stop()
        await link.close()
    return 0


def main() -> int:
    _die_with_parent()
    # Answering senders comes first: while both want the CPU, the serving process gets it, and
    # the work catches up as soon as arrivals pause (what `[spool] max_backlog` bounds).
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches `hub serve`, which stops us
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("hub.workprocess is started by `hub serve`", file=sys.stderr)
        return 2
    return asyncio.run(_work(int(sys.argv[1])))


if __name__ == "__main__":
    sys.exit(main())
