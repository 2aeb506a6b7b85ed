"""Hot reload: watch the rule folder, and swap in a new rule set only when it is entirely good.

A candidate is loaded, validated and its rule tests run (in a worker thread: compiling can take
a moment and the event loop must not stall). Only then does one reference assignment make it
live, so a message is routed by the old set or the new one, never by a mix. A failing candidate
stays out; its errors are kept for the API and exported as metrics, and the old rules keep
routing. The reloader itself implements the Router protocol, so the intake can hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from hub.metrics import REGISTRY
from hub.routing import DefaultQueueRouter, RoutingContext, RoutingDecision
from hub.routing.engine import RuleSet
from hub.routing.errors import RuleError, RuleSetInvalid
from hub.routing.loader import load_rules
from hub.routing.schema import QueueDecl
from hub.routing.testing import run_tests

log = logging.getLogger(__name__)

RELOADS = Counter("hub_rules_reloads", "Rule folder reload attempts", ["result"],
                  registry=REGISTRY)
RULES_ERRORS = Gauge("hub_rules_errors",
                     "Errors in the rule folder's latest candidate (0: live)", registry=REGISTRY)
RULES_INFO = Gauge("hub_rules_loaded", "1 for the live rule set version", ["version"],
                   registry=REGISTRY)


class RuleReloader:
    def __init__(self, rules_dir: Path | str, *, default_queue: str = "general",
                 tested: str | None = None) -> None:
        self.rules_dir = Path(rules_dir)
        self.default_queue = default_queue
        # A version whose tests passed in another process just now (`hub serve`'s, for its work
        # process): the same files decide the same way, so they are not run again at the first
        # load. Later loads all run them: the tests themselves may have changed since.
        self.tested = tested
        self.current: RuleSet | None = None
        self.errors: list[RuleError] = []
        self.loaded_at: datetime | None = None
        self.refused: tuple[datetime, list[RuleError]] | None = None  # the latest refusal
        self.on_live: Callable[[str], Awaitable[object]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._fallback = DefaultQueueRouter(default_queue)

    # -- the Router protocol, delegated to the live set

    @property
    def version(self) -> str:
        live = self.current
        return live.version if live else self._fallback.version

    @property
    def history_days(self) -> int:
        live = self.current
        return live.history_days if live else 0

    @property
    def uses_once_per(self) -> bool:
        return self.current.uses_once_per if self.current else False

    @property
    def once_per_rules(self) -> frozenset[str]:
        return self.current.once_per_rules if self.current else frozenset()

    @property
    def language_codes(self) -> frozenset[str]:
        return self.current.language_codes if self.current else frozenset()

    @property
    def default_queue_name(self) -> str:
        return self.current.default_queue if self.current else self.default_queue

    def decide(self, ctx: RoutingContext) -> RoutingDecision:
        live = self.current  # one read: a concurrent swap cannot split a decision
        if live is None:
            # The folder has never been valid: route to the default queue until it is.
            return self._fallback.decide(ctx)
        return live.decide(ctx)

    def queue_declarations(self) -> list[QueueDecl]:
        return list(self.current.queues.values()) if self.current else []

    # -- loading

    def candidate(self) -> tuple[RuleSet | None, list[RuleError]]:
        """Load, validate and test the folder as it is now; nothing changes."""
        try:
            ruleset = load_rules(self.rules_dir, default_queue=self.default_queue)
        except RuleSetInvalid as exc:
            return None, exc.errors
        tested, self.tested = self.tested, None
        if ruleset.version == tested:
            return ruleset, []
        _count, failures = run_tests(ruleset)
        return (None, failures) if failures else (ruleset, [])

    def reload(self) -> bool:
        """Try the folder; swap it in if it is good. Returns whether it is live now."""
        ruleset, errors = self.candidate()
        if ruleset is None:
            self.errors = errors
            self.refused = (datetime.now(UTC), errors)
            RELOADS.labels("refused").inc()
            RULES_ERRORS.set(len(errors))
            for e in errors:
                log.error("rules not reloaded: %s", e)
            return False
        if self.current is not None and self.current.version != ruleset.version:
            with contextlib.suppress(KeyError):
                RULES_INFO.remove(self.current.version)
        self.current, self.errors = ruleset, []  # the atomic swap
        self.loaded_at = datetime.now(UTC)
        RELOADS.labels("ok").inc()
        RULES_ERRORS.set(0)
        RULES_INFO.labels(ruleset.version).set(1)
        log.info("rules %s live from %s", ruleset.version, self.rules_dir)
        return True

    async def reload_async(self) -> bool:
        before = self.current
        live = await asyncio.to_thread(self.reload)
        if live and self.current is not before and self.on_live is not None:
            await self.on_live(self.version)
        return live

    # -- watching

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="rules-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        from watchfiles import awatch

        async for _changes in awatch(self.rules_dir, debounce=300, step=50):
            try:
                await self.reload_async()
            except Exception:  # a reload must never kill the watcher
                log.exception("rules reload failed unexpectedly; old rules stay live")

    def status(self) -> dict[str, Any]:
        """For the API: what is live, since when, and the latest refused change with its errors."""
        refused = None
        if self.refused is not None:
            at, errors = self.refused
            refused = {"at": at, "errors": [str(e) for e in errors]}
        return {
            "version": self.current.version if self.current else None,
            "loaded_at": self.loaded_at,
            "rules_dir": str(self.rules_dir),
            "errors": [str(e) for e in self.errors],
            "last_refused": refused,
        }
