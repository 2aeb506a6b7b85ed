"""The hub's runtime: builds every part from Settings, starts and stops them on one event loop.

`hub serve` uses `Hub.start()`; `hub worker` processes use `worker_hub()`, the same parts minus the
listeners, with a private loop in a thread so that RQ's plain job functions can run async code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hub import audit, identities, presence
from hub.acknowledge import Acknowledger
from hub.adapters.base import (
    AdapterContext,
    AdapterRegistry,
    Capability,
    ChannelAdapter,
    KeepsConnections,
)
from hub.channels import configured_adapters
from hub.config import Settings, load_settings
from hub.events import EventBus, RedisRelay
from hub.intake import Intake
from hub.jobs import InProcessJobs, Jobs, RQJobs
from hub.notices import StatusNotices
from hub.parsepool import ParsePool
from hub.queues import declared_queues, sync_queues
from hub.routing import DefaultQueueRouter, Router
from hub.routing.watch import RuleReloader
from hub.rules_runtime import load_rules
from hub.spool import Spool, SpoolWorker, WorkPolicy
from hub.status import StatusReporter
from hub.storage.blobs import BlobStore
from hub.storage.db import Database, upgrade
from hub.survey import ReplyAnswers

if TYPE_CHECKING:
    from hub.workers.delivery import DeliveryRunner
    from hub.workprocess import WorkProcess

log = logging.getLogger(__name__)
LOCAL_JOBS = 64  # outbox ids a process's in-process jobs hold at once
RULES_LIVE = "rules.live"  # audit action: a rule set went live (target_id: its version)
T = TypeVar("T")


def reply_secret(settings: Settings) -> bytes:
    """The configured secret, or one generated once and kept (0600) in the data dir."""
    configured = settings.hub.secret_key.get_secret_value()
    if configured:
        return configured.encode()
    path = Path(settings.hub.data_dir) / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(value)
    return value


class Hub:
    """Holds the shared parts; adapters and the rule set are swappable for tests and reloads."""

    def __init__(self, settings: Settings, *, adapters: list[ChannelAdapter] | None = None,
                 jobs: Jobs | None = None) -> None:
        self.settings = settings
        self.db = Database(settings.database.url, pool_size=settings.database.pool_size)
        self.blobs = BlobStore(Path(settings.hub.data_dir) / "blobs")
        self.events = EventBus()
        self.event_relay = (RedisRelay(self.events, settings.redis.url,
                                       f"{settings.redis.queue_prefix}:events")
                            if settings.redis.url else None)
        self.reply_secret = reply_secret(settings)
        self.adapters = AdapterRegistry()
        for adapter in (adapters if adapters is not None
                        else configured_adapters(settings, self.reply_secret)):
            self.adapters.register(adapter)
            if "identity" in adapter.hooks:
                identities.register(adapter.name, adapter.normalize_identity)
        self._router: Router = DefaultQueueRouter(settings.routing.default_queue)
        self.rules: RuleReloader | None = None  # the live rule set, when a rules folder exists
        self._delivery: DeliveryRunner | None = None
        self._local_jobs: InProcessJobs | None = None
        self.jobs: Jobs = jobs or self._make_jobs()
        short = frozenset(self.adapters.capable(Capability.SHORT_TEXT))  # phone channels
        self.acknowledger = Acknowledger(
            channels=self.adapters.acknowledging(),
            default_language=settings.hub.default_language,
            templates=self._template,
            attachment_limit=settings.smtp.max_attachment_bytes,
            short=short,
        )
        self.status_notices = StatusNotices(
            channels=self.adapters, short=short,
            default_language=settings.hub.default_language,
            public_url=str(settings.hub.public_url).rstrip("/"), templates=self._template)
        self.intake = Intake(
            self.db, self.blobs,
            router=self.router,
            reply_secret=self.reply_secret,
            reopen_window=timedelta(days=settings.hub.reopen_window_days),
            survey_replies=ReplyAnswers(short, timedelta(days=settings.hub.survey_days)),
            acknowledger=self.acknowledger,
            on_outbox=self._queued_by_intake,
            events=self.events,
            online=functools.partial(presence.online_staff_ids, self),
        )
        self.spool = Spool(self.db, max_backlog=settings.spool.max_backlog)
        self.parse_pool = ParsePool(settings.spool.parse_processes, settings.spool.parse_seconds)
        self.spool_worker = SpoolWorker(
            self.spool, self.intake, self.adapters.spool_parsers(),
            policy=WorkPolicy(quiet=settings.spool.quiet_ms / 1000,
                              max_delay=settings.spool.max_delay_seconds),
            pool=self.parse_pool, language_codes=lambda: self.router().language_codes)
        self.status = StatusReporter(self.db, self.events)
        for adapter in self.adapters.with_hook("events"):  # checked when registered
            adapter.bind_events(self.events)
        self.context = AdapterContext(
            intake=self.intake, spool=self.spool, status=self.status, events=self.events,
            settings=settings, public_url=str(settings.hub.public_url).rstrip("/"))
        self._background: list[asyncio.Task[None]] = []
        self._listeners: list[Any] = []
        self._loop_thread: _LoopThread | None = None
        self.work_process: WorkProcess | None = None  # `hub serve`'s child that works (embedded)

    def _queued_by_intake(self, outbox_ids: Sequence[int]) -> None:
        """Acknowledgments and auto-replies the intake just committed: delivered here when the
        jobs are this process's, after the backlog they came with (hub.workers.delivery)."""
        if self.jobs is self._local_jobs:
            self.delivery.queued_by_intake(outbox_ids)
        self.jobs.submit_delivery(outbox_ids)

    def _make_jobs(self) -> Jobs:
        if self.settings.redis.url:
            return RQJobs(self.settings.redis.url, self.settings.redis.queue_prefix,
                          lost_after=self.settings.outbox.stale_after_seconds)
        return self.local_jobs

    @property
    def delivery(self) -> DeliveryRunner:
        """This process's delivery runner (hub.workers.delivery)."""
        if self._delivery is None:
            from hub.workers.delivery import DeliveryRunner

            self._delivery = DeliveryRunner(self)
        return self._delivery

    @property
    def local_jobs(self) -> InProcessJobs:
        """Deliveries on this process's loop: every job in embedded mode; in `hub worker`,
        the ids its RQ jobs hand over."""
        if self._local_jobs is None:
            # More ids in hand than sends at once, so that claims and outcomes come in batches.
            self._local_jobs = InProcessJobs(self.delivery.deliver_one, concurrency=LOCAL_JOBS,
                                             before_slot=self.delivery.hold_if_automatic)
        return self._local_jobs

    def router(self) -> Router:
        return self._router

    def set_router(self, router: Router) -> None:
        self._router = router

    def _template(self, name: str, language: str,
                  variables: dict[str, Any]) -> tuple[str, str] | None:
        """(subject, body) of the rule folder's template `name` in that language, if it has one."""
        ruleset = self.rules.current if self.rules is not None else None
        if ruleset is None:
            return None
        try:
            rendered = ruleset.render_template(name, language, variables)
        except KeyError:
            return None
        if rendered.language != language:
            return None  # let the caller try the next language in its order
        return rendered.subject or f"[#{variables['reference']}]", rendered.body

    async def _rules_went_live(self, version: str) -> None:
        """Recorded, so that `hub rules explain` elsewhere can tell which set is routing."""
        try:
            async with self.db.transaction() as session:
                audit.record(session, "rules", RULES_LIVE, "rules", version,
                             rules_dir=str(self.settings.routing.rules_dir))
        except Exception as exc:  # a record for the tools; routing goes on without it
            log.warning("could not record the live rule set: %s", type(exc).__name__)

    async def prepare(self, *, leading: bool = True, rules_tested: str | None = None) -> None:
        """Load rules; the leading process (not a work process beside it) also migrates (unless
        told not to), records the live rule set and makes sure declared queues exist.
        `rules_tested`: the version of the rules whose tests the leading process ran."""
        if leading and self.settings.database.migrate_on_start:
            await upgrade(self.settings.database.url)
        self.rules = await load_rules(self.settings.routing, tested=rules_tested)
        if self.rules is not None:
            self.set_router(self.rules)
            if leading:
                self.rules.on_live = self._rules_went_live
                if self.rules.current is not None:
                    await self._rules_went_live(self.rules.version)
        if leading:
            wanted = [self.settings.routing.default_queue, *self.settings.smtp.inboxes.values()]
            await sync_queues(self.db, declared_queues(self.rules, wanted))

    async def start(self, *, listeners: bool = True, prepared: bool = False,
                    work: bool | None = None) -> list[str]:
        """`listeners`: the channels' ports and pollers, and events from other processes.
        `work` (default: with the listeners) starts the spool worker; upkeep (the outbox
        sweeper, timers, purges) runs unless `work` is False (a work process does it)."""
        if not prepared:
            await self.prepare()
        addresses: list[str] = []
        if listeners:
            # Listeners first: a port that cannot be had stops the start before any work began.
            for adapter in self.adapters.with_hook("listener"):
                addresses += await adapter.start(self.context)
                self._listeners.append(adapter)
            if self.event_relay is not None:
                await self.event_relay.listen()
        if work if work is not None else listeners:
            await self.spool_worker.start()
        if work is not False:
            self._background.append(asyncio.create_task(self._maintenance_loop()))
        return addresses

    async def _maintenance_loop(self) -> None:
        from hub.workers.maintenance import run_once

        while True:
            await run_once(self)
            await asyncio.sleep(self.settings.outbox.sweep_interval_seconds)

    async def stop(self) -> None:
        for adapter in self._listeners:
            await adapter.stop()
        self._listeners.clear()
        if self.work_process is not None:
            await self.work_process.stop()  # its sends under way finish and are recorded
        await self.spool_worker.stop()
        await self.intake.close()  # what the spool worker handed over is stored, or let go
        await self.spool.close()
        await asyncio.to_thread(self.parse_pool.close)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.rules is not None:
            await self.rules.stop()
        await self.jobs.drain()
        if self._local_jobs is not None and self._local_jobs is not self.jobs:
            await self._local_jobs.drain()  # a worker's sends under way finish and are recorded
        await self._close_connections()
        if self.event_relay is not None:
            await self.event_relay.close()
        await presence.close(self)
        await self.db.dispose()
        close = getattr(self.jobs, "close", None)
        if close is not None:
            close()

    async def _close_connections(self) -> None:
        for adapter in self.adapters.with_hook("connections"):
            if not isinstance(adapter, KeepsConnections):
                continue  # checked when registered: cannot happen
            try:
                await adapter.close_connections()
            except Exception as exc:  # closing is a courtesy to the provider; stopping goes on
                log.warning("adapter %s: could not close its connections: %s", adapter.name,
                            type(exc).__name__)

    # -- worker processes -------------------------------------------------------------------

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this hub's private loop thread and wait (for RQ job functions)."""
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread.run(coro)


class _LoopThread:
    """One event loop in a daemon thread: engines and pools stay bound to it across jobs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="hub-jobs",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()


_worker_hub: Hub | None = None
_worker_lock = threading.Lock()


def set_worker_hub(hub: Hub | None) -> None:
    """Install the hub that RQ job functions in this process use (`hub worker`, tests)."""
    global _worker_hub
    _worker_hub = hub


def worker_hub() -> Hub:
    global _worker_hub
    with _worker_lock:
        if _worker_hub is None:
            _worker_hub = Hub(load_settings())
        return _worker_hub

