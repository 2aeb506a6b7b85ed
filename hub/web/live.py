"""Live events for staff: WebSocket `GET /api/v1/events`, the caller's queues only.

Each event goes out as one JSON text frame `{"kind", "conversation_id", "queue", ...}`; the first
frame, `{"kind": "ready"}`, says the subscription is live. An agent
gets the events of the queues they belong to (re-read every `REFRESH_SECONDS`, so a changed
membership takes effect without a reconnect); supervisors and admins get every event. What a
client missed while disconnected it reads from the API; events are notifications, not records.

While the socket is open its staff member counts as online (hub.presence), and the frames the
client sends say what it is viewing or typing in (hub.web.collision).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import WSMsgType, web

from hub import presence
from hub.events import Event
from hub.service import visible_queues
from hub.web.collision import Announcer
from hub.web.errors import ApiError
from hub.web.keys import HUB_KEY, caller

READY = "ready"
REFRESH_SECONDS = 30.0
# Events between the hub's own processes (a chat reply on its way to the process holding the
# visitor's socket): the staff hear of the same thing through message.* and delivery.status.
INTERNAL_KINDS = ("webchat.",)
HEARTBEAT_SECONDS = 25.0


async def events_socket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    socket = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=4096)
    if not socket.can_prepare(request).ok:
        raise ApiError(426, "upgrade_required", "this endpoint is a WebSocket: send an Upgrade")
    await socket.prepare(request)
    subscription = hub.events.subscribe()
    # From here on nothing is missed: a client reads what came before from the API.
    await socket.send_json({"kind": READY, "conversation_id": None, "queue": None})
    announcer = Announcer(hub, caller(request).staff)
    reader = asyncio.create_task(_drain_incoming(socket, announcer))
    try:
        async with presence.present(hub, caller(request).staff.id):
            await _forward(request, socket, subscription, reader)
    finally:
        announcer.close()
        hub.events.unsubscribe(subscription)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await socket.close()
    return socket


async def _forward(request: web.Request, socket: web.WebSocketResponse,
                   subscription: asyncio.Queue[Event], reader: asyncio.Task[None]) -> None:
    """The caller's events, until the client goes away."""
    visible, read_at = await _visible(request), time.monotonic()
    while not socket.closed:
        event = await _next(subscription, reader)
        if event is None:
            break
        if time.monotonic() - read_at > REFRESH_SECONDS:
            visible, read_at = await _visible(request), time.monotonic()
        if event.kind.startswith(INTERNAL_KINDS):
            continue
        if visible is None or event.queue in visible:
            await socket.send_json(event.as_json())


async def _visible(request: web.Request) -> set[str] | None:
    async with request.app[HUB_KEY].db.read() as session:
        return await visible_queues(session, caller(request).staff)


async def _next(subscription: asyncio.Queue[Event], reader: asyncio.Task[None]) -> Event | None:
    """The next event, or None once the client went away."""
    getter = asyncio.create_task(subscription.get())
    try:
        done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # the handler itself cancelled (the hub stopping): the getter goes with it
        if not getter.done():
            getter.cancel()
    return getter.result() if getter in done else None


async def _drain_incoming(socket: web.WebSocketResponse, announcer: Announcer) -> None:
    """Clients mostly listen; they may say what they view or type in (hub.web.collision).
    Reading also keeps pings and the close handshake flowing."""
    async for message in socket:
        if message.type == WSMsgType.ERROR:
            break
        if message.type == WSMsgType.TEXT:
            await announcer.frame(message.data)
