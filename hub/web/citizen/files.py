"""Files on the public timeline of `/track/{reference}`: a download link per attachment of the
messages the page shows (the citizen's own and what was sent to them; never an inline part of
an email, nor anything of a note or an automatic inbound message).

The link is `/track/{reference}/files/{id}-{mac}`: the mac signs the reference and the
attachment id with the hub's secret, so a link cannot be guessed or moved to another request,
and the attachment must still belong to a shown message of that very request. Images the
browser can show safely (PNG, JPEG, GIF, WebP) are served inline with their type; anything
else is a download (`Content-Disposition: attachment`), typed `application/octet-stream`
unless it is a PDF or plain text; always `X-Content-Type-Options: nosniff`.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from aiohttp import web
from sqlalchemy import ColumnElement, and_, not_, select

from hub.model import Direction
from hub.storage.tables import Attachment, Conversation, Message
from hub.web.api import SAFE_INLINE_TYPES, disposition
from hub.web.citizen.guard import rate_limit
from hub.web.keys import HUB_KEY

FILE_TOKEN = re.compile(r"^(\d{1,18})-([0-9a-f]{32})$")
IMAGES = re.compile(r"^image/(png|jpeg|gif|webp)$")


def _mac(secret: bytes, reference: str, attachment_id: int) -> str:
    message = f"track-file:{reference}:{attachment_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def file_url(secret: bytes, reference: str, attachment_id: int) -> str:
    return f"/track/{reference}/files/{attachment_id}-{_mac(secret, reference, attachment_id)}"


def shown_messages() -> list[ColumnElement[bool]]:
    """The conditions of a message the public timeline shows (hub.web.citizen.track)."""
    inbound = Message.direction == Direction.INBOUND.value
    return [Message.direction.in_((Direction.INBOUND.value, Direction.OUTBOUND.value)),
            not_(and_(inbound, Message.automatic.is_(True)))]


async def track_file(request: web.Request) -> web.StreamResponse:
    rate_limit(request)
    reference = request.match_info["reference"].upper()
    hub = request.app[HUB_KEY]
    match = FILE_TOKEN.match(request.match_info["token"])
    if match is None:
        raise web.HTTPNotFound()
    attachment_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _mac(hub.reply_secret, reference, attachment_id)):
        raise web.HTTPNotFound()
    async with hub.db.read() as session:
        found = await session.scalar(
            select(Attachment).join(Message, Message.id == Attachment.message_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Attachment.id == attachment_id, Attachment.inline.is_(False),
                   Conversation.reference == reference, Conversation.spam.is_(False),
                   *shown_messages()))
    if found is None:
        raise web.HTTPNotFound()
    path = hub.blobs.path_for(found.sha256)
    if not path.is_file():
        raise web.HTTPNotFound()
    kind = found.content_type.lower()
    image = bool(IMAGES.match(kind))
    return web.FileResponse(path, headers={
        "Content-Type": kind if SAFE_INLINE_TYPES.match(kind) else "application/octet-stream",
        "Content-Disposition": disposition(found.filename, "inline" if image else "attachment"),
        "X-Content-Type-Options": "nosniff",
    })
