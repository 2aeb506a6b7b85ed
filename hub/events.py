"""In-process publish/subscribe of hub events (new message, status change) for live staff views."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "message.inbound", "message.outbound", "conversation.updated", "delivery.status"
    conversation_id: int
    queue: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class EventBus:
    """Fan-out to bounded subscriber queues; a slow subscriber loses events, never blocks intake."""

    def __init__(self, max_backlog: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._max_backlog = max_backlog

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._max_backlog)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: Event) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("event subscriber is behind; dropping %s", event.kind)
