"""The workspace's live events: WebSocket `GET /staff/events`, the same stream as the API's
`/api/v1/events` (hub.web.live: the caller's queues only), opened with the session cookie
instead of a bearer token. Only a page of this hub may open it (the Origin must be ours)."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from hub.web.keys import CALLER_KEY, Caller
from hub.web.live import events_socket
from hub.web.staff.guard import forbidden, signed_in


async def staff_events(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return forbidden(request, "Live updates are only for this hub's own pages.")
    who = signed_in(request)
    request[CALLER_KEY] = Caller(staff=who.staff, token_hash="session:" + who.token_hash)
    return await events_socket(request)
