"""The web chat adapter and its WebSocket, `GET /chat/ws` (the HTTP fallback is in `fallback`).

The handshake is refused with 403 before the upgrade unless its `Origin` is the hub's own
(`[hub] public_url`, and the request's own host while public_url is not configured) or one of
`[webchat] allowed_origins`, so no other site can open a chat in a visitor's name. Too many
open connections from one address get a `too_many_connections` error frame and a close. A
socket may send `FRAMES_PER_SECOND` frames a second (bursts of `FRAME_BURST`): past that a
`message` (or `hello`) gets a `rate_limited` error with `retry_after` (the widget sends it
again), a `typing`, `seen` or `ping` is dropped (hints: nothing is lost), and a client that goes
on regardless (`MAX_OVERRUN` refused frames in a row) is closed with 1008. A frame over
`max_msg_size` closes the socket (1009): it cannot be a frame of this protocol. The
first frame must be `hello`; then each frame is answered in order (session.py does the work):
a message's `ack` leaves only after the intake committed it. Pushed frames (staff replies,
typing, joined) go through the connection's own queue and writer (live.py). aiohttp's
heartbeat pings the browser and drops a connection that stopped answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from hub.adapters.base import AdapterContext, Capability, EventPublisher
from hub.config import Settings
from hub.model import OutboundMessage, SendResult
from hub.outbound import GONE_CHECKS
from hub.web.addresses import client_address
from hub.web.keys import HUB_KEY

from . import fallback
from .limits import FrameBudget
from .live import REFUSED, Connection, write_frames
from .normalize import CHANNEL
from .outbound import AwayCheck, fallback_channels, publish_reply
from .presence import VisitorPresence
from .protocol import (
    BAD_REQUEST,
    RATE_LIMITED,
    TOO_MANY_CONNECTIONS,
    UNAVAILABLE,
    ChatMessage,
    Hello,
    Ping,
    ProtocolError,
    Seen,
    Typing,
    error_frame,
    frame,
    parse,
)
from .session import Chat

log = logging.getLogger(__name__)
SOCKET_PATH = "/chat/ws"
HEARTBEAT_SECONDS = 25.0
FRAMES_PER_SECOND = 5.0  # a person types; a widget sends a few frames per message at most
FRAME_BURST = 30  # a welcome's `seen`s and an outbox flushed on reconnect come together
MAX_OVERRUN = 100  # refused frames in a row before the socket is closed
HINTS = frozenset({"typing", "seen", "ping"})  # frames dropped, unanswered, past the budget
_IDENTITY_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # as hub.identities has it for webchat


class WebchatAdapter:
    """The chat widget's channel: visitors over WebSocket (or HTTP), staff replies pushed."""

    name = CHANNEL
    capabilities = Capability.DELIVERY_STATUS | Capability.ATTACHMENTS
    hooks = frozenset({"routes", "identity", "events", "listener"})

    def __init__(self, settings: Settings, reply_secret: bytes) -> None:
        self.settings = settings
        self.config = settings.webchat
        self.presence = VisitorPresence(self.config.away_after_seconds, settings.redis.url,
                                        settings.redis.queue_prefix)
        self.events: EventPublisher | None = None
        self.chat: Chat | None = None
        # Replies to a visitor who left go by email or SMS (hub.outbound asks this).
        GONE_CHECKS[CHANNEL] = AwayCheck(self.presence, fallback_channels(settings))

    def bind_events(self, events: EventPublisher) -> None:
        self.events = events

    def normalize_identity(self, address: str) -> str:
        value = address.strip()
        if not _IDENTITY_RE.match(value):
            raise ValueError("not a chat visitor id")
        return value

    async def send(self, msg: OutboundMessage) -> SendResult:
        return await publish_reply(self.events, msg)

    async def start(self, ctx: AdapterContext) -> list[str]:
        return []  # served by the hub's HTTP listener; start exists for `stop`

    async def stop(self) -> None:
        if self.chat is not None:
            await self.chat.close()
        await self.presence.close()

    def chat_for(self, request: web.Request) -> Chat:
        if self.chat is None:
            self.chat = Chat(request.app[HUB_KEY], self.presence)
        return self.chat

    def routes(self, ctx: AdapterContext) -> Iterable[web.RouteDef]:
        return [web.get(SOCKET_PATH, self.socket), *fallback.routes(self)]

    # -- the WebSocket --------------------------------------------------------------------------

    async def socket(self, request: web.Request) -> web.StreamResponse:
        if not origin_allowed(request, self.settings):
            REFUSED.labels("origin").inc()
            return refused_origin()
        chat = self.chat_for(request)
        socket = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS,
                                       max_msg_size=4 * self.config.max_body + 16_384)
        if not socket.can_prepare(request).ok:
            return web.json_response(frame("error", code=BAD_REQUEST,
                                           message="this endpoint is a WebSocket"), status=426)
        address = str(client_address(request) or "unknown")
        if not chat.connections.acquire(address):
            REFUSED.labels(TOO_MANY_CONNECTIONS).inc()
            await socket.prepare(request)
            await socket.send_json(error_frame(ProtocolError(TOO_MANY_CONNECTIONS),
                                               chat.language(None)))
            await socket.close()
            return socket
        try:
            await socket.prepare(request)
            await _Talk(chat, socket, address).run()
        finally:
            chat.connections.release(address)
        return socket


class _Talk:
    """One socket's conversation: frames read in order, answered through the writer."""

    def __init__(self, chat: Chat, socket: web.WebSocketResponse, address: str) -> None:
        self.chat = chat
        self.socket = socket
        self.address = address
        self.conn: Connection | None = None
        self.writer: asyncio.Task[None] | None = None
        self.budget = FrameBudget(FRAMES_PER_SECOND, FRAME_BURST)
        self.overrun = 0  # frames refused in a row

    async def run(self) -> None:
        try:
            async for message in self.socket:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY) \
                        and not self.budget.take():
                    await self._over_budget(message.data if message.type == WSMsgType.TEXT
                                            else "")
                    continue
                self.overrun = 0
                if message.type == WSMsgType.TEXT:
                    await self._frame(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._reply(error_frame(ProtocolError(BAD_REQUEST), self._language))
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            await self._end()

    async def _over_budget(self, text: str) -> None:
        """A frame past the budget: refused with a clear error, or dropped when it is a hint;
        a client that never stops is closed."""
        REFUSED.labels(RATE_LIMITED).inc()
        self.overrun += 1
        if self.overrun > MAX_OVERRUN:
            await self.socket.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many frames")
            return
        kind, client_id = _kind_and_client_id(text)
        if kind in HINTS:
            return
        await self._reply(error_frame(ProtocolError(RATE_LIMITED, client_id=client_id,
                                                    retry_after=1, values={"seconds": 1}),
                                      self._language))

    @property
    def _language(self) -> str:
        return self.conn.language if self.conn is not None else self.chat.language(None)

    async def _reply(self, reply: dict[str, Any]) -> None:
        if self.conn is not None:
            self.conn.push(reply)
        else:
            with contextlib.suppress(ConnectionResetError):
                await self.socket.send_json(reply)

    async def _frame(self, text: str) -> None:
        try:
            try:
                data = json.loads(text)
            except ValueError:
                raise ProtocolError(BAD_REQUEST) from None
            reply = await self._handle(parse(data))
        except ProtocolError as error:
            REFUSED.labels(error.code).inc()
            reply = error_frame(error, self._language)
        except Exception as exc:  # the database away, a bug: the visitor hears, never a trace
            log.error("chat frame not handled: %s", type(exc).__name__)
            reply = error_frame(ProtocolError(UNAVAILABLE, client_id=_client_id(text)),
                                self._language)
        if reply is not None:
            await self._reply(reply)

    async def _handle(self, incoming: Any) -> dict[str, Any] | None:
        if isinstance(incoming, Ping):
            return frame("pong")
        if isinstance(incoming, Hello):
            await self._hello(incoming)
            return None
        if self.conn is None:  # everything else needs to know the visitor
            raise ProtocolError(BAD_REQUEST, client_id=getattr(incoming, "client_id", None))
        if isinstance(incoming, ChatMessage):
            return await self.chat.message(self.conn, incoming)
        if isinstance(incoming, Typing):
            self.chat.typing(self.conn, incoming.on)
        elif isinstance(incoming, Seen):
            self.chat.seen(self.conn, incoming.id)
        return None

    async def _hello(self, hello: Hello) -> None:
        chat = self.chat
        visitor = chat.visitor(hello.token)
        if self.conn is not None and self.conn.visitor != visitor:
            await self._end()  # another visitor on the same socket: start over
        if self.conn is None:
            self.conn = Connection(visitor, chat.language(hello.language), self.address)
            chat.live.add(self.conn, chat.hub.events)  # before the history: nothing missed
            await chat.presence.arrive(visitor)
            self.writer = asyncio.get_running_loop().create_task(
                write_frames(self.conn, self.socket.send_json))
        else:
            self.conn.language = chat.language(hello.language)
            self.conn.held = self.conn.held or []
        self.conn.welcome(await chat.welcome(self.conn, hello.after))

    async def _end(self) -> None:
        conn, writer = self.conn, self.writer
        self.conn = self.writer = None
        if conn is None:
            return
        self.chat.live.remove(conn)
        # A task of its own: it runs to the end even when this handler is being cancelled
        # (the client went away), so a visitor never stays "here" for ever.
        leave = asyncio.ensure_future(self.chat.presence.leave(conn.visitor))
        try:
            if writer is not None:
                await _flush(conn)
        finally:
            if writer is not None:
                writer.cancel()
            await asyncio.shield(leave)


def _client_id(text: str) -> str | None:
    """The client_id of a frame that could not be handled, so the widget knows which."""
    return _kind_and_client_id(text)[1]


def _kind_and_client_id(text: str) -> tuple[str | None, str | None]:
    try:
        data = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    kind, value = data.get("type"), data.get("client_id")
    return (kind if isinstance(kind, str) else None,
            value if isinstance(value, str) and len(value) <= 64 else None)


async def _flush(conn: Connection, seconds: float = 1.0) -> None:
    """Give the writer a moment to send what is queued (the last ack) before it stops."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await conn.queue.join()


def refused_origin() -> web.Response:
    return web.json_response(frame("error", code=BAD_REQUEST,
                                   message="This site may not open the chat."), status=403)


def allowed_origins(request: web.Request, settings: Settings) -> set[str]:
    public = str(settings.hub.public_url).rstrip("/")
    allowed = {_origin(public), *settings.webchat.allowed_origins}
    if "public_url" not in settings.hub.model_fields_set:  # not configured: where it runs
        allowed.add(f"{request.scheme}://{request.host}".lower())
    return allowed


def origin_allowed(request: web.Request, settings: Settings, *, required: bool = True) -> bool:
    """The browser's Origin is the hub's own or an allowed site's. `required=False` (the
    HTTP fallback) lets a request without Origin through: browsers send it on every
    cross-site request, and the token travels in a header no other site can set."""
    origin = request.headers.get("Origin")
    if origin is None:
        return not required
    return origin.strip().lower() in allowed_origins(request, settings)


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()
