"""What staff do to a conversation from the workspace: reply, note, claim, resolve and reopen.

Each is one call into hub.service (its rules, its audit row, its events), then a redirect back
to the conversation (POST, redirect, GET). A refusal of the service shows the conversation again
with the reason and what was typed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp_jinja2
from aiohttp import web

from hub import service
from hub.model import ConversationStatus
from hub.storage.tables import Staff
from hub.web.keys import HUB_KEY
from hub.web.staff.guard import PREFIX, signed_in
from hub.web.staff.pages import conversation_context

if TYPE_CHECKING:
    from hub.app import Hub

MAX_BODY = 20_000
Call = Callable[["Hub", Staff, int], Awaitable[object]]


def _back(conversation_id: int, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{PREFIX}/conversations/{conversation_id}?done={done}#timeline")


async def _refused(request: web.Request, conversation_id: int, exc: service.ServiceError,
                   **typed: str) -> web.Response:
    if isinstance(exc, service.NotFound):
        raise web.HTTPNotFound()
    context = await conversation_context(request, conversation_id)
    status = 409 if isinstance(exc, service.Conflict) else 422
    return aiohttp_jinja2.render_template("staff/conversation.html", request, {
        **context, "error": exc.message, **typed}, status=status)


async def _text(request: web.Request, name: str) -> str:
    value = (await request.post()).get(name, "")
    return value.strip()[:MAX_BODY] if isinstance(value, str) else ""


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _act(request: web.Request, done: str, call: Call, **typed: str) -> web.StreamResponse:
    """Run one service call on the conversation of the URL; back to it, or why not."""
    conversation_id = _id(request)
    try:
        await call(request.app[HUB_KEY], signed_in(request).staff, conversation_id)
    except service.ServiceError as exc:
        return await _refused(request, conversation_id, exc, **typed)
    raise _back(conversation_id, done)


async def _empty(request: web.Request, what: str) -> web.Response:
    return await _refused(request, _id(request),
                          service.Invalid(f"The {what} is empty: write something first."))


async def reply(request: web.Request) -> web.StreamResponse:
    body = await _text(request, "body")
    channel = await _text(request, "channel") or None
    if not body:
        return await _empty(request, "reply")

    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.reply(hub.db, staff, conversation_id, body, channel=channel,
                             channels=hub.adapters, submit_delivery=hub.jobs.submit_delivery,
                             publish=hub.events.publish)

    return await _act(request, "reply", call, reply_draft=body)


async def note(request: web.Request) -> web.StreamResponse:
    body = await _text(request, "body")
    if not body:
        return await _empty(request, "note")

    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.note(hub.db, staff, conversation_id, body, publish=hub.events.publish)

    return await _act(request, "note", call, note_draft=body)


async def claim(request: web.Request) -> web.StreamResponse:
    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.claim(hub.db, staff, conversation_id, publish=hub.events.publish)

    return await _act(request, "claim", call)


async def set_status(request: web.Request) -> web.StreamResponse:
    status = await _text(request, "status")
    if status not in (ConversationStatus.RESOLVED.value, ConversationStatus.OPEN.value):
        return await _refused(request, _id(request),
                              service.Invalid("status: resolve or reopen only"))

    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.set_status(hub.db, staff, conversation_id, status,
                                  publish=hub.events.publish)

    return await _act(request, status, call)
