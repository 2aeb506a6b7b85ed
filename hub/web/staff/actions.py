"""What staff do to a conversation from the workspace: reply, note, claim, resolve and reopen,
assign, transfer, priority, tags, and (supervisors) merge another contact into the
conversation's contact.

Each is one call into hub.service (its rules, its audit row, its events), then a redirect back
to the conversation (POST, redirect, GET). A refusal of the service shows the conversation again
with the reason and what was typed.

A reply carries `after`, the newest message the page showed: when the citizen or a colleague
wrote since, the service holds it (Conflict) and the page shows the new messages, the text, and
"Send anyway" (`force`), which sends without that check. The reply form's "Insert" button
(`insert`, for pages without script) adds the chosen canned response to the text instead of
sending.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
from aiohttp import web

from hub import canned, service
from hub.contacts import merge_contacts
from hub.model import ConversationStatus
from hub.reply_files import checked_files
from hub.storage.tables import Staff
from hub.web.keys import HUB_KEY
from hub.web.reply_upload import posted_files
from hub.web.staff.guard import PREFIX, signed_in
from hub.web.staff.pages import compose_context, conversation_context

if TYPE_CHECKING:
    from hub.app import Hub

MAX_BODY = 20_000
Call = Callable[["Hub", Staff, int], Awaitable[object]]


def _back(conversation_id: int, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{PREFIX}/conversations/{conversation_id}?done={done}#timeline")


async def _shown(request: web.Request, conversation_id: int, status: int,
                 **extra: Any) -> web.Response:
    """The conversation page again, with `extra` (what was typed, why it was refused)."""
    context = await conversation_context(request, conversation_id)
    context |= compose_context(request, context, str(extra.get("reply_draft", "")))
    return aiohttp_jinja2.render_template("staff/conversation.html", request,
                                          {**context, **extra}, status=status)


async def refused(request: web.Request, conversation_id: int, exc: service.ServiceError,
                  **typed: Any) -> web.Response:
    if isinstance(exc, service.NotFound):
        raise web.HTTPNotFound()
    if isinstance(exc, service.Conflict):
        return await _shown(request, conversation_id, 409, conflict=exc.message, **typed)
    return await _shown(request, conversation_id, 422, error=exc.message, **typed)


async def _text(request: web.Request, name: str) -> str:
    value = (await request.post()).get(name, "")
    return value.strip()[:MAX_BODY] if isinstance(value, str) else ""


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _act(request: web.Request, done: str, call: Call, **typed: Any) -> web.StreamResponse:
    """Run one service call on the conversation of the URL; back to it, or why not."""
    conversation_id = _id(request)
    try:
        await call(request.app[HUB_KEY], signed_in(request).staff, conversation_id)
    except service.ServiceError as exc:
        return await refused(request, conversation_id, exc, **typed)
    raise _back(conversation_id, done)


async def _empty(request: web.Request, what: str) -> web.Response:
    return await refused(request, _id(request),
                          service.Invalid(f"The {what} is empty: write something first."))


def _number(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 18 else None


async def _insert_canned(request: web.Request, body: str, channel: str | None) -> web.Response:
    """The page again with the chosen canned response added to the text (without script)."""
    hub, conversation_id = request.app[HUB_KEY], _id(request)
    canned_id = _number(await _text(request, "canned"))
    try:
        if canned_id is None:
            raise service.Invalid("canned: choose a canned response first")
        async with hub.db.read() as session:
            text = await canned.rendered(session, signed_in(request).staff, conversation_id,
                                         canned_id)
    except service.ServiceError as exc:
        return await refused(request, conversation_id, exc, reply_draft=body,
                             reply_channel=channel)
    draft = f"{body}\n{text}" if body else text
    return await _shown(request, conversation_id, 200, reply_draft=draft, reply_channel=channel)


async def reply(request: web.Request) -> web.StreamResponse:
    body = await _text(request, "body")
    channel = await _text(request, "channel") or None
    if await _text(request, "insert"):
        return await _insert_canned(request, body, channel)
    if not body:
        return await _empty(request, "reply")
    after = None if await _text(request, "force") else _number(await _text(request, "after"))
    try:
        files = checked_files(await posted_files(await request.post()),
                              request.app[HUB_KEY].settings.hub.max_reply_attachment_bytes)
    except service.Invalid as exc:
        exc.message += " Nothing was sent: choose the files again."
        return await refused(request, _id(request), exc, reply_draft=body, reply_channel=channel)

    async def call(hub: Hub, staff: Staff, conversation_id: int) -> object:
        try:
            return await service.reply(hub.db, staff, conversation_id, body, channel=channel,
                                       channels=hub.adapters, after_message_id=after,
                                       attachments=files, blobs=hub.blobs,
                                       submit_delivery=hub.jobs.submit_delivery,
                                       publish=hub.events.publish)
        except service.ServiceError as exc:
            if files:  # a browser cannot keep them in the form shown again
                exc.message += " Nothing was sent: choose the files again."
            raise

    return await _act(request, "reply", call, reply_draft=body, reply_channel=channel,
                      seen=after)


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
        return await refused(request, _id(request),
                              service.Invalid("status: resolve or reopen only"))

    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.set_status(hub.db, staff, conversation_id, status,
                                  publish=hub.events.publish, notify=hub.status_notices,
                                  submit_delivery=hub.jobs.submit_delivery)

    return await _act(request, status, call)


async def assign(request: web.Request) -> web.StreamResponse:
    """Assign to the staff member of the form's `staff` (an email); empty unassigns."""
    email = await _text(request, "staff") or None

    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.assign(hub.db, staff, conversation_id, email, publish=hub.events.publish)

    return await _act(request, "assign", call)


async def transfer(request: web.Request) -> web.StreamResponse:
    """Move to the form's `queue`; back to the list when the caller no longer sees it."""
    hub, staff, conversation_id = request.app[HUB_KEY], signed_in(request).staff, _id(request)
    queue = await _text(request, "queue")
    try:
        await service.transfer(hub.db, staff, conversation_id, queue, publish=hub.events.publish)
    except service.ServiceError as exc:
        return await refused(request, conversation_id, exc)
    async with hub.db.read() as session:
        still_seen = await service.may_work(session, staff, queue)
    if not still_seen:
        raise web.HTTPSeeOther(f"{PREFIX}/?moved={conversation_id}")
    raise _back(conversation_id, "transfer")


async def priority(request: web.Request) -> web.StreamResponse:
    value = await _text(request, "priority")

    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.set_priority(hub.db, staff, conversation_id, value,
                                    publish=hub.events.publish)

    return await _act(request, "priority", call)


async def tags(request: web.Request) -> web.StreamResponse:
    """`add`: tags separated by commas; `remove`: one tag (the button next to it)."""
    add = (await _text(request, "add")).split(",")
    remove = [await _text(request, "remove")]

    def call(hub: Hub, staff: Staff, conversation_id: int) -> Awaitable[object]:
        return service.set_tags(hub.db, staff, conversation_id, add=add, remove=remove,
                                publish=hub.events.publish)

    return await _act(request, "tags", call, tags_draft=", ".join(t for t in add if t.strip()))


async def merge_contact(request: web.Request) -> web.StreamResponse:
    """Merge the contact numbered in the form into the contact of this conversation."""
    other = _number(await _text(request, "other"))
    conversation_id = _id(request)
    hub, staff = request.app[HUB_KEY], signed_in(request).staff
    try:
        if not service.sees_all(staff):
            raise service.NotFound("contact")
        if other is None:
            raise service.Invalid("contact: write the number of the contact to merge")
        async with hub.db.read() as session:
            keep = (await service.conversation_for(session, staff, conversation_id)).contact_id
        try:
            await merge_contacts(hub.db, staff, keep, other, publish=hub.events.publish)
        except service.NotFound:
            raise service.Invalid(f"contact: there is no contact number {other}") from None
    except service.ServiceError as exc:
        return await refused(request, conversation_id, exc, merge_other=str(other or ""))
    raise _back(conversation_id, "merge")
