"""What each client frame does, for both transports (the WebSocket and the HTTP fallback).

`hello` -> the visitor (from the token, else a new one) and a `welcome` with their current
conversation's messages after `after`. `message` -> checked (size, rate), handed to the intake,
and acknowledged only once the intake committed it: the `ack` carries the stored message id, and
a resend of the same client_id gets the very same `ack` (the intake's dedupe on the provider id
`visitor:client_id` answers with the stored message). The chat goes straight to the intake, not
through the spool: the spool answers before the message has an id, and a visitor waiting on the
socket is the one sender who needs that id at once (it is the ack's `id`, and the `after` of
their next resume). The intake commits in batches, so a burst of visitors costs few
transactions. `typing` -> a `citizen.typing` event for the workspace; `seen` -> the staff
message's delivery status moves to `delivered` (hub.status, forward-only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub import presence as staff_presence
from hub.adapters.base import InputRefused
from hub.events import Event
from hub.forms.uploads import sniff
from hub.intake import InvalidInbound
from hub.model import DeliveryReport, DeliveryStatus, InboundAttachment, utcnow
from hub.storage.tables import Staff

from . import history
from .history import ConversationInfo
from .limits import ConnectionLimit, MessageLimits, SlidingWindow
from .live import CITIZEN_TYPING, WEBCHAT_MESSAGE, Connection, LiveConnections
from .normalize import CHANNEL, Topic, to_inbound
from .outbound import delivery_key
from .presence import VisitorPresence
from .protocol import (
    BAD_REQUEST,
    FILE_TOO_LARGE,
    FILE_TYPE,
    RATE_LIMITED,
    TOO_LONG,
    UNAVAILABLE,
    ChatMessage,
    ProtocolError,
    frame,
)
from .visitors import make_token, new_visitor_id, verify_token

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)
FILE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"})
SEEN_RETRIES = (0.5, 2.0, 5.0)  # a `seen` may overtake the record of the send it is about
TYPING_REPEAT = 3.0  # seconds between repeated "typing on" events of one connection
REQUESTS_PER_MINUTE = 600  # HTTP fallback requests per client address (a busy office's NAT)


class Chat:
    """The chat of one hub: its limits, its connections and what every frame does."""

    def __init__(self, hub: Hub, presence: VisitorPresence) -> None:
        self.hub = hub
        self.config = hub.settings.webchat
        self.secret = hub.reply_secret
        self.presence = presence
        self.limits = MessageLimits(self.config.per_minute, self.config.per_ip_per_minute)
        self.connections = ConnectionLimit(self.config.max_connections_per_ip)
        # The HTTP fallback's other requests (hello, typing, seen, polls) per address: each
        # reads the database, and unlike socket frames they have no connection to count on.
        self.requests = SlidingWindow(REQUESTS_PER_MINUTE)
        self.live = LiveConnections(self)
        self._background: set[asyncio.Task[Any]] = set()

    # -- hello ----------------------------------------------------------------------------------

    def language(self, asked: str | None) -> str:
        languages = self.hub.settings.hub.languages
        code = (asked or "").split("-")[0].lower()
        return code if code in languages else self.hub.settings.hub.default_language

    def visitor(self, token: str | None) -> str:
        """The visitor a token names, or a new one (a missing or bad token is not an error)."""
        return verify_token(token, self.secret) or new_visitor_id()

    async def welcome(self, conn: Connection, after: int | None) -> dict[str, Any]:
        """The welcome for a connection already registered (so nothing pushed is missed)."""
        async with self.hub.db.read() as session:
            conversation = await history.current_conversation(session, conn.visitor)
            messages = (await history.messages_after(session, conversation.id, after,
                                                     self.secret)
                        if conversation is not None else [])
        self.live.watch(conn, conversation)
        online, open_ = await self.availability(conversation)
        return frame("welcome", token=make_token(conn.visitor, self.secret),
                     visitor=conn.visitor,
                     conversation=conversation.as_frame() if conversation else None,
                     online=online, open=open_, messages=messages,
                     limits={"max_body": self.config.max_body,
                             "per_minute": self.config.per_minute,
                             "max_file_bytes": self.config.max_file_bytes})

    def queue_of(self, conversation: ConversationInfo | None) -> str:
        """The queue whose staff and hours count for the visitor: their conversation's, or
        the default queue's (before their first message)."""
        return (conversation.queue if conversation is not None and conversation.queue
                else self.hub.router().default_queue_name)

    async def availability(self, conversation: ConversationInfo | None) -> tuple[bool, bool]:
        """(online, open) for the conversation's queue, or the default queue."""
        return await self.queue_availability(self.queue_of(conversation))

    async def queue_availability(self, queue: str) -> tuple[bool, bool]:
        try:
            online = await staff_presence.staff_online(self.hub, queue)
        except Exception as exc:  # the database away: say nobody is in, offer a message
            log.warning("chat: staff presence unknown: %s", type(exc).__name__)
            online = False
        return online, self.queue_open(queue)

    def queue_open(self, queue: str) -> bool:
        """Within the queue's calendar hours (a queue without a calendar is always open)."""
        ruleset = self.hub.rules.current if self.hub.rules is not None else None
        if ruleset is None:
            return True
        declared = ruleset.queues.get(queue)
        calendar = ruleset.calendars.get(declared.calendar) if declared and declared.calendar \
            else None
        return calendar.is_open(utcnow()) if calendar is not None else True

    # -- message --------------------------------------------------------------------------------

    async def message(self, conn: Connection, message: ChatMessage,
                      attachments: tuple[InboundAttachment, ...] = ()) -> dict[str, Any]:
        """Store the message (once per client_id) and return its ack; ProtocolError else."""
        client_id = message.client_id
        if len(message.body) > self.config.max_body:
            raise ProtocolError(TOO_LONG, client_id=client_id,
                                values={"max": self.config.max_body})
        if not message.body.strip() and not attachments:
            raise ProtocolError(BAD_REQUEST, client_id=client_id)
        wait = self.limits.take(conn.visitor, conn.address)
        if wait:
            raise ProtocolError(RATE_LIMITED, client_id=client_id, retry_after=wait,
                                values={"seconds": wait})
        inbound = to_inbound(conn.visitor, message, language=conn.language,
                             topic=self.topic(message.profile.topic if message.profile else None),
                             phone_region=self.phone_region(), attachments=attachments)
        try:
            accepted = await self.hub.intake.accept(inbound)
        except InputRefused:
            raise ProtocolError(UNAVAILABLE, client_id=client_id) from None
        except InvalidInbound:
            raise ProtocolError(BAD_REQUEST, client_id=client_id) from None
        ack, conversation = await self._ack(accepted.message_id, client_id)
        self.live.watch(conn, conversation)
        if not accepted.duplicate:  # the visitor's other tabs show it too
            self.hub.events.publish(Event(WEBCHAT_MESSAGE, accepted.conversation_id, None, {
                "visitor": conn.visitor, "message_id": accepted.message_id, "skip": conn.id}))
        conn.sent_ids.add(accepted.message_id)
        return ack

    async def _ack(self, message_id: int, client_id: str
                   ) -> tuple[dict[str, Any], ConversationInfo]:
        try:
            async with self.hub.db.read() as session:
                found = await history.ack_fields(session, message_id)
        except Exception as exc:  # committed, but not readable now: the resend gets the ack
            log.warning("chat: ack not read back: %s", type(exc).__name__)
            found = None
        if found is None:
            raise ProtocolError(UNAVAILABLE, client_id=client_id)
        fields, conversation = found
        return frame("ack", client_id=client_id, **fields), conversation

    def topic(self, form_id: str | None) -> Topic | None:
        """The pre-chat topic: a form of the live rule set, or nothing."""
        ruleset = self.hub.rules.current if self.hub.rules is not None else None
        form = ruleset.forms.get(form_id) if ruleset is not None and form_id else None
        if form is None:
            return None
        return Topic(form.id, form.queue, form.text(form.title, self.hub.settings.hub
                                                    .default_language))

    def phone_region(self) -> str | None:
        ruleset = self.hub.rules.current if self.hub.rules is not None else None
        return ruleset.settings.phone_region if ruleset is not None else "US"

    async def attachment(self, conn: Connection, message: ChatMessage, filename: str,
                         data: bytes) -> dict[str, Any]:
        """A file (HTTP fallback): an image or a PDF by its content, within the size cap."""
        if len(data) > self.config.max_file_bytes:
            raise ProtocolError(TOO_LONG, client_id=message.client_id, text=FILE_TOO_LARGE,
                                values={"max": round(self.config.max_file_bytes / 1e6, 1)})
        content_type = sniff(data)
        if content_type not in FILE_TYPES:
            raise ProtocolError(BAD_REQUEST, client_id=message.client_id, text=FILE_TYPE)
        name = (filename or "file").replace("/", "_").replace("\\", "_")[-120:]
        return await self.message(conn, message, (InboundAttachment(name, content_type, data),))

    # -- typing, seen -------------------------------------------------------------------------

    def typing(self, conn: Connection, on: bool) -> None:
        """Told to the workspace on a change, and a repeated "on" at most every few seconds
        (a widget sends one per keystroke; staff need to know it goes on, not each key)."""
        now = time.monotonic()
        told_on, told_at = conn.typing
        unchanged = on == told_on and (not on or now - told_at < TYPING_REPEAT)
        if conn.conversation is None or unchanged:
            return
        conn.typing = (on, now)
        self.hub.events.publish(Event(CITIZEN_TYPING, conn.conversation.id,
                                      conn.conversation.queue, {"on": on}))

    def seen(self, conn: Connection, message_id: int) -> None:
        """Delivered, through the status path; in the background, tried again a few times
        (a visitor may see a reply before its send has been recorded)."""
        task = asyncio.get_running_loop().create_task(self._report_seen(conn.visitor, message_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _report_seen(self, visitor: str, message_id: int) -> None:
        report = DeliveryReport(DeliveryStatus.DELIVERED.value,
                                (delivery_key(visitor, message_id),))
        for wait in (0.0, *SEEN_RETRIES):
            await asyncio.sleep(wait)
            try:
                if await self.hub.status.report(CHANNEL, report):
                    return
            except Exception as exc:  # delivered is a nicety; the message was sent
                log.info("chat: seen not recorded: %s", type(exc).__name__)

    # -- frames the live connections push -----------------------------------------------------

    async def message_frame(self, message_id: int, visitor: str
                            ) -> tuple[dict[str, Any], ConversationInfo] | None:
        async with self.hub.db.read() as session:
            return await history.message_for(session, message_id, visitor, self.secret)

    async def conversation(self, conversation_id: int) -> ConversationInfo | None:
        async with self.hub.db.read() as session:
            return await history.conversation_info(session, conversation_id)

    def typing_frame(self, data: dict[str, Any]) -> dict[str, Any]:
        return frame("typing", on=bool(data.get("on")), author=str(data.get("name") or ""))

    async def joined_frame(self, email: str) -> dict[str, Any] | None:
        async with self.hub.db.read() as session:
            name = await session.scalar(select(Staff.name).where(Staff.email == email))
        return frame("joined", author=name) if name else None

    async def status_frame(self, conversation_id: int) -> dict[str, Any]:
        conversation = await self.conversation(conversation_id)
        online, open_ = await self.availability(conversation)
        return frame("status", online=online, open=open_,
                     conversation=conversation.as_frame() if conversation else None)

    async def close(self) -> None:
        await self.live.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
