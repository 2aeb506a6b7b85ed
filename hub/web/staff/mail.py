"""Email HTML and attachments in the workspace.

An email's HTML is never part of a workspace page: `GET /staff/messages/{id}/html` serves it as
a document of its own, sanitised again with nh3 (hub.sanitize) and under a strict CSP of its own
(no script at all, a sandbox, framed only by the workspace), for a sandboxed iframe. Remote
images are dropped unless staff asked for them (`?images=1`); inline parts (`cid:`) point at the
workspace's attachment route. The text part stays the default view (the timeline).

`GET /staff/attachments/{id}` downloads an attachment of a conversation the staff member may
see; with `?inline=1` an image of a safe type (SAFE_IMAGES) is served inline, for a preview.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import service
from hub.sanitize import sanitize_html
from hub.storage.tables import Attachment, Conversation, Message, Staff
from hub.web.api import SAFE_INLINE_TYPES, disposition
from hub.web.keys import HUB_KEY
from hub.web.staff.guard import PREFIX, signed_in, visible

SAFE_IMAGES = re.compile(r"^image/(png|jpeg|gif|webp)$")
FRAME_SANDBOX = "allow-same-origin allow-popups allow-popups-to-escape-sandbox"


def frame_csp(remote_images: bool) -> str:
    images = "'self' http: https:" if remote_images else "'self'"
    return (f"default-src 'none'; img-src {images}; style-src 'self'; base-uri 'none'; "
            f"form-action 'none'; frame-ancestors 'self'; sandbox {FRAME_SANDBOX}")


def is_safe_image(content_type: str) -> bool:
    return bool(SAFE_IMAGES.match(content_type.lower()))


def preview_url(attachment_id: int) -> str:
    return f"{PREFIX}/attachments/{attachment_id}?inline=1"


async def html_message_ids(session: AsyncSession, conversation_id: int) -> set[int]:
    """The messages of the conversation that have an HTML part."""
    return set(await session.scalars(select(Message.id).where(
        Message.conversation_id == conversation_id, Message.html.is_not(None))))


async def _visible_html(session: AsyncSession, request: web.Request) -> tuple[str, dict[str, str]]:
    """The message's stored HTML, and its inline images by content id."""
    staff = signed_in(request).staff
    message_id = int(request.match_info["id"])
    stored = await session.scalar(
        select(Message.html).join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id == message_id, await service.visible_filter(session, staff)))
    if not stored:
        raise web.HTTPNotFound()
    parts = await session.execute(
        select(Attachment.id, Attachment.content_id, Attachment.content_type)
        .where(Attachment.message_id == message_id, Attachment.content_id.is_not(None)))
    return stored, {f"cid:{(cid or '').strip('<>')}": preview_url(aid)
                    for aid, cid, kind in parts if is_safe_image(kind)}


async def message_html(request: web.Request) -> web.Response:
    remote = request.query.get("images") == "1"
    async with request.app[HUB_KEY].db.read() as session:
        stored, inline = await _visible_html(session, request)

    def image_src(src: str) -> str | None:
        return inline.get(src) if src.startswith("cid:") else src

    body = sanitize_html(stored, remote_images=remote, image_src=image_src) or ""
    response = aiohttp_jinja2.render_template("staff/mail_frame.html", request, {"body": body})
    response.headers["Content-Security-Policy"] = frame_csp(remote)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


async def attachment(request: web.Request) -> web.StreamResponse:
    hub, attachment_id = request.app[HUB_KEY], int(request.match_info["id"])

    def read(session: AsyncSession, staff: Staff) -> Awaitable[Attachment]:
        return service.attachment_for(session, staff, attachment_id)

    found = await visible(request, read)
    path = hub.blobs.path_for(found.sha256)
    if not path.is_file():
        raise web.HTTPNotFound()
    content_type = found.content_type.lower()
    inline = request.query.get("inline") == "1" and is_safe_image(content_type)
    return web.FileResponse(path, headers={
        "Content-Type": content_type if SAFE_INLINE_TYPES.match(content_type)
        else "application/octet-stream",
        "Content-Disposition": disposition(found.filename, "inline" if inline else "attachment"),
        "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
    })
