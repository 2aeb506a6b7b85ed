"""Loading the admins' rule folder into the running hub (and keeping it live on changes)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)


async def load_rules(hub: Hub) -> None:
    """Until the rule engine is wired in, everything goes to the default queue."""
    return None
