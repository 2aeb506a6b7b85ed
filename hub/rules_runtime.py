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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)


async def load_rules(hub: Hub, *, watch: bool | None = None) -> None:
    settings = hub.settings.routing
    rules_dir = Path(settings.rules_dir)
    if not rules_dir.is_dir():  # noqa: ASYNC240 - once, at start
        log.info("no rules folder at %s: routing everything to %r", rules_dir,
                 settings.default_queue)
        return
    from hub.routing.watch import RuleReloader

    reloader = RuleReloader(rules_dir, default_queue=settings.default_queue)
    if not await reloader.reload_async():
        print(f"hub: rules in {rules_dir} have {len(reloader.errors)} error(s); routing "
              f"everything to {settings.default_queue!r} until they are fixed:", file=sys.stderr)
        for error in reloader.errors:
            print(f"  {error}", file=sys.stderr)
    hub.rules = reloader
    hub.set_router(reloader)
    if settings.watch if watch is None else watch:
        await reloader.start()
