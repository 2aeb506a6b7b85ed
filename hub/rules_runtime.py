"""Loading the admins' rule folder into the running hub, and keeping it live on changes.

A folder that fails at start leaves the hub routing everything to the default queue, loudly:
the errors go to the log and stderr, the metrics show them, and the first good version of the
folder goes live by itself (the watcher keeps trying). Better than refusing to start, which
would turn one typo plus a restart into an outage of every channel.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hub.config import RoutingSection
from hub.routing.watch import RuleReloader

log = logging.getLogger(__name__)


async def load_rules(settings: RoutingSection, *, watch: bool | None = None,
                     tested: str | None = None) -> RuleReloader | None:
    """The live rule set holder for the rules folder (None when there is none); it routes to
    the default queue until a good version of the folder has loaded. `tested`: a version whose
    tests already passed elsewhere (hub.routing.watch.RuleReloader)."""
    rules_dir = Path(settings.rules_dir)
    if not rules_dir.is_dir():  # noqa: ASYNC240 - once, at start
        log.info("no rules folder at %s: routing everything to %r", rules_dir,
                 settings.default_queue)
        return None
    reloader = RuleReloader(rules_dir, default_queue=settings.default_queue, tested=tested)
    if not await reloader.reload_async():
        print(f"hub: rules in {rules_dir} have {len(reloader.errors)} error(s); routing "
              f"everything to {settings.default_queue!r} until they are fixed:", file=sys.stderr)
        for error in reloader.errors:
            print(f"  {error}", file=sys.stderr)
    if settings.watch if watch is None else watch:
        await reloader.start()
    return reloader
