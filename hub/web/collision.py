"""Collision presence: who of the staff is viewing or typing in a conversation, published
through the event bus (so it crosses processes with `[redis] url`) as
`Event("staff.viewing" | "staff.typing", conversation_id, queue, {"staff_id", "name", "on",
"reply"})`.

A workspace says so with small JSON frames on its events WebSocket (hub.web.live):
`{"kind": "viewing" | "typing", "conversation_id": N, "on": true | false, "reply": bool}`;
`reply` is true only for typing in the reply to the citizen: a web chat visitor is told of that
typing (adapters/webchat/live.py), never of a colleague writing an internal note. Only a conversation
the caller may see is announced, frames beyond a small budget are dropped (a client gone wild
floods nobody), and when the socket closes its "viewing" ends for everybody else.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub import service
from hub.events import Event
from hub.storage.tables import Staff

if TYPE_CHECKING:
    from hub.app import Hub

KINDS = {"viewing": "staff.viewing", "typing": "staff.typing"}
BUDGET = 30  # frames per WINDOW_SECONDS
WINDOW_SECONDS = 10.0
REMEMBERED = 50  # conversations whose queue a socket keeps
# Visibility and queue are read again after this long: a conversation transferred away (or a
# membership taken back) stops being announced to the old queue's members within it.
RECHECK_SECONDS = 30.0


@dataclass
class Announcer:
    """One socket's announcements: which conversations it may talk about, and its budget."""

    hub: Hub
    staff: Staff
    queues: dict[int, str | None] = field(default_factory=dict)  # visible conversation -> queue
    checked: dict[int, float] = field(default_factory=dict)  # conversation -> when it was read
    viewing: set[int] = field(default_factory=set)
    window: float = 0.0
    spent: int = 0

    async def frame(self, text: str) -> None:
        """Handle one frame from the client; anything unexpected is ignored."""
        parsed = _parse(text)
        if parsed is None or not self._within_budget():
            return
        kind, conversation_id, on, reply = parsed
        if not await self._may_see(conversation_id):
            return
        if kind == "viewing":
            (self.viewing.add if on else self.viewing.discard)(conversation_id)
        self._publish(KINDS[kind], conversation_id, on, reply=reply and kind == "typing")

    def close(self) -> None:
        """The socket went away: whatever it was viewing it views no more."""
        for conversation_id in self.viewing:
            self._publish(KINDS["viewing"], conversation_id, False)
            self._publish(KINDS["typing"], conversation_id, False)
        self.viewing.clear()

    def _publish(self, kind: str, conversation_id: int, on: bool, *, reply: bool = False
                 ) -> None:
        self.hub.events.publish(Event(kind, conversation_id, self.queues.get(conversation_id), {
            "staff_id": self.staff.id, "name": self.staff.name, "on": on, "reply": reply}))

    def _within_budget(self) -> bool:
        now = time.monotonic()
        if now - self.window > WINDOW_SECONDS:
            self.window, self.spent = now, 0
        self.spent += 1
        return self.spent <= BUDGET

    async def _may_see(self, conversation_id: int) -> bool:
        now = time.monotonic()
        if conversation_id in self.queues \
                and now - self.checked.get(conversation_id, 0.0) < RECHECK_SECONDS:
            return True
        async with self.hub.db.read() as session:
            try:
                row = await service.item_for(session, self.staff, conversation_id)
            except service.NotFound:
                self.queues.pop(conversation_id, None)
                self.checked.pop(conversation_id, None)
                self.viewing.discard(conversation_id)
                return False
        if conversation_id not in self.queues and len(self.queues) >= REMEMBERED:
            oldest = next(iter(self.queues))
            self.queues.pop(oldest)
            self.checked.pop(oldest, None)
        self.queues[conversation_id], self.checked[conversation_id] = row.queue, now
        return True


def _parse(text: str) -> tuple[str, int, bool, bool] | None:
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind, conversation_id, on = data.get("kind"), data.get("conversation_id"), data.get("on")
    if kind not in KINDS or not isinstance(on, bool) or type(conversation_id) is not int:
        return None
    if not 0 < conversation_id < 10**18:
        return None
    return kind, conversation_id, on, data.get("reply") is True
