"""This process's chat connections (WebSockets and waiting long-polls) and the events pushed to
them: staff replies (`webchat.message`, from `send` in whichever process delivered it), staff
typing, an agent joining, a status change, and staff of the visitor's queue coming online or
going offline (`status`, on hub.presence's `STAFF_PRESENCE`: each connection is told when its
queue's (online, open) changed from what it was last told).

One subscription to the hub's event bus serves every connection of the process: an event is
looked at once and handed to the connections of its visitor or conversation, so a thousand
visitors cost one subscriber, not a thousand. Each connection has its own bounded queue of
frames written by its own writer, so a slow browser never holds up the others; a connection
that falls that far behind loses pushes, which it reads back on its next `hello` (`after`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from hub.events import Event, EventBus
from hub.metrics import REGISTRY
from hub.presence import STAFF_PRESENCE

from . import protocol
from .history import ConversationInfo

if TYPE_CHECKING:
    from .session import Chat

log = logging.getLogger(__name__)
CONNECTIONS = Gauge("hub_webchat_connections",
                    "Open chat connections of this process (sockets and waiting long-polls)",
                    registry=REGISTRY)
REFUSED = Counter("hub_webchat_refused", "Chat frames and handshakes refused, by error code",
                  ["code"], registry=REGISTRY)

WEBCHAT_MESSAGE = "webchat.message"  # data: visitor, message_id, optional connection to skip
CITIZEN_TYPING = "citizen.typing"  # data: on (for the staff workspace)
STAFF_TYPING = "staff.typing"  # data: staff_id, name, on, reply (from the staff workspace)
JOINED_ACTIONS = frozenset({"claim", "assign"})
MAX_QUEUED = 256  # frames waiting for one connection
MAX_REMEMBERED = 2000  # message ids a connection remembers having sent


@dataclass(eq=False)
class Connection:
    """One open chat connection of a visitor (a socket, or a long-poll's session)."""

    visitor: str
    language: str
    address: str
    conversation: ConversationInfo | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(MAX_QUEUED))
    sent_ids: set[int] = field(default_factory=set)
    typing: tuple[bool, float] = (False, 0.0)  # the last typing state told, and when
    # Frames pushed before the welcome went out wait here, so the welcome is always first.
    held: list[dict[str, Any]] | None = field(default_factory=list)
    told: tuple[bool, bool] | None = None  # (online, open) as the client last heard it

    def welcome(self, frame: dict[str, Any]) -> None:
        """Queue the welcome, then what was pushed while it was being read."""
        self.told = (bool(frame["online"]), bool(frame["open"]))
        self.sent_ids.update(message["id"] for message in frame["messages"])
        held, self.held = self.held or [], None
        self._put(frame)
        for later in held:
            self.push(later)

    def push(self, frame: dict[str, Any]) -> None:
        """Queue a frame for the client; a message it was given before is not repeated."""
        if self.held is not None:
            self.held.append(frame)
            return
        if frame.get("type") == "status":
            self.told = (bool(frame["online"]), bool(frame["open"]))
        if frame.get("type") == "message":
            if frame["id"] in self.sent_ids:
                return
            if len(self.sent_ids) >= MAX_REMEMBERED:
                self.sent_ids.clear()
            self.sent_ids.add(frame["id"])
        self._put(frame)

    def _put(self, frame: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:  # a stalled client: it reads back what it missed on resume
            log.info("chat connection behind; a frame was dropped")


class LiveConnections:
    """The registry of this process's connections and the one dispatcher of events to them."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.by_visitor: dict[str, set[Connection]] = {}
        self.by_conversation: dict[int, set[Connection]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self._subscription: asyncio.Queue[Event] | None = None
        self._bus: EventBus | None = None
        # A message push reads the database: each runs as its own task (a slow read holds up
        # nobody else), chained per visitor so their messages still arrive in order.
        self._pushing: dict[str, asyncio.Task[None]] = {}
        # Staff presence changes: one task at a time reads the queues' availability; a change
        # heard meanwhile makes it read once more (a burst of sign-ins: few reads).
        self._availability: asyncio.Task[None] | None = None
        self._availability_again = False

    def add(self, conn: Connection, bus: EventBus) -> None:
        CONNECTIONS.inc()
        self.by_visitor.setdefault(conn.visitor, set()).add(conn)
        self.watch(conn, conn.conversation)
        if self._dispatcher is None or self._dispatcher.done():
            self._bus = bus
            self._subscription = bus.subscribe()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_forever())

    def remove(self, conn: Connection) -> None:
        if conn in self.by_visitor.get(conn.visitor, ()):
            CONNECTIONS.dec()
        _discard(self.by_visitor, conn.visitor, conn)
        if conn.conversation is not None:
            _discard(self.by_conversation, conn.conversation.id, conn)

    def watch(self, conn: Connection, conversation: ConversationInfo | None) -> None:
        """The connection now shows `conversation` (its visitor's newest); only a registered
        connection is indexed by it (a one-off HTTP request's is not)."""
        registered = conn in self.by_visitor.get(conn.visitor, ())
        if conn.conversation is not None and registered:
            _discard(self.by_conversation, conn.conversation.id, conn)
        conn.conversation = conversation
        if conversation is not None and registered:
            self.by_conversation.setdefault(conversation.id, set()).add(conn)

    async def close(self) -> None:
        tasks = [t for t in (self._dispatcher, self._availability, *self._pushing.values())
                 if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pushing.clear()
        if self._bus is not None and self._subscription is not None:
            self._bus.unsubscribe(self._subscription)
        self._dispatcher = self._subscription = self._bus = None

    async def _dispatch_forever(self) -> None:
        assert self._subscription is not None
        while True:
            event = await self._subscription.get()
            try:
                await self._dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad event must not end every visitor's updates
                log.error("chat event %s not dispatched: %s", event.kind, type(exc).__name__)

    async def _dispatch(self, event: Event) -> None:
        if event.kind == WEBCHAT_MESSAGE:
            self._message_later(event)
            return
        if event.kind == STAFF_PRESENCE:
            self._availability_later()
            return
        watching = list(self.by_conversation.get(event.conversation_id, ()))
        if not watching:
            return
        if event.kind == STAFF_TYPING:
            # Only typing in the reply to the citizen starts the visitor's "is typing" (never
            # a colleague's internal note); every stop goes through, so none is left showing.
            if event.data.get("on") and event.data.get("reply") is not True:
                return
            frame = self.chat.typing_frame(event.data)
            for conn in watching:
                conn.push(frame)
        elif event.kind == "conversation.updated":
            await self._updated(event, watching)

    def _message_later(self, event: Event) -> None:
        visitor = str(event.data.get("visitor", ""))
        skip = event.data.get("skip")
        targets = [c for c in self.by_visitor.get(visitor, ()) if c.id != skip]
        if not targets:  # not connected to this process: nothing to read
            return
        task = asyncio.get_running_loop().create_task(
            self._message(event, visitor, targets, self._pushing.get(visitor)))
        self._pushing[visitor] = task
        task.add_done_callback(lambda done: self._pushed(visitor, done))

    def _availability_later(self) -> None:
        if self._availability is not None and not self._availability.done():
            self._availability_again = True
            return
        if self.by_visitor:
            self._availability = asyncio.get_running_loop().create_task(self._tell_availability())

    async def _tell_availability(self) -> None:
        again = True
        while again:
            self._availability_again = False
            try:
                await self._push_availability()
            except Exception as exc:  # the database away: the next change tries again
                log.warning("chat availability not told: %s", type(exc).__name__)
            again = self._availability_again

    async def _push_availability(self) -> None:
        """A `status` to each connection whose queue's (online, open) is not what it heard."""
        known: dict[str, tuple[bool, bool]] = {}
        for conn in [c for group in list(self.by_visitor.values()) for c in group]:
            queue = self.chat.queue_of(conn.conversation)
            if queue not in known:
                known[queue] = await self.chat.queue_availability(queue)
            if conn.told != known[queue]:  # never told (a long-poll): tell it
                online, open_ = known[queue]
                conversation = conn.conversation.as_frame() if conn.conversation else None
                conn.push(protocol.frame("status", online=online, open=open_,
                                         conversation=conversation))

    def _pushed(self, visitor: str, task: asyncio.Task[None]) -> None:
        if self._pushing.get(visitor) is task:
            del self._pushing[visitor]
        if not task.cancelled() and task.exception() is not None:
            log.error("chat message not pushed: %s", type(task.exception()).__name__)

    async def _message(self, event: Event, visitor: str, targets: list[Connection],
                       before: asyncio.Task[None] | None) -> None:
        found = await self.chat.message_frame(int(event.data["message_id"]), visitor)
        if before is not None:  # the visitor's earlier message goes first
            await asyncio.gather(before, return_exceptions=True)
        if found is None:
            return
        frame, conversation = found
        for conn in targets:
            if conn.conversation is None or conn.conversation.id != conversation.id:
                self.watch(conn, conversation)
            conn.push(frame)

    async def _updated(self, event: Event, watching: list[Connection]) -> None:
        action = event.data.get("action")
        frames: list[dict[str, Any]] = []
        if action in JOINED_ACTIONS and event.data.get("assignee"):
            joined = await self.chat.joined_frame(str(event.data["assignee"]))
            frames += [joined] if joined is not None else []
        if action in ("status", "transfer"):
            frames.append(await self.chat.status_frame(event.conversation_id))
        for frame in frames:
            for conn in watching:
                if frame["type"] == "status":
                    self.watch(conn, await self.chat.conversation(event.conversation_id))
                conn.push(frame)


def _discard(index: dict[Any, set[Connection]], key: Any, conn: Connection) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(conn)
        if not found:
            del index[key]


async def write_frames(conn: Connection, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """The connection's writer: its queued frames, in order, until cancelled."""
    while True:
        frame = await conn.queue.get()
        try:
            with contextlib.suppress(ConnectionResetError):
                await send(frame)
        finally:
            conn.queue.task_done()
