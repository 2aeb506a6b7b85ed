"""The reply box's helpers: canned responses (the list a conversation may use, and one filled
in for it, hub.canned), the SMS segment counter (hub.adapters.sms.text, the one count the
SMS channel itself applies) and the file input, offered for the channels that carry files
(hub.reply_files says what may be attached).

`GET /staff/conversations/{id}/canned/{canned_id}` answers `{"text": ...}` for the page's script;
without a script the reply form's "Insert" button does the same through hub.web.staff.actions.
`POST /staff/sms-segments` answers the counter's words for a text, so the page never counts on
its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from hub import canned
from hub.adapters.base import AdapterRegistry
from hub.adapters.sms.text import segments, sms_text
from hub.reply_files import MAX_REPLY_FILES, REPLY_TYPES, size_label
from hub.storage.tables import Staff
from hub.web.keys import HUB_KEY
from hub.web.staff.guard import visible
from hub.web.staff.queries import ChannelOption

MAX_TEXT = 20_000


@dataclass(frozen=True, slots=True)
class CannedOption:
    id: int
    name: str
    queue: str | None


async def canned_options(session: AsyncSession, staff: Staff,
                         queue: str | None) -> list[CannedOption]:
    """The canned responses `staff` may use in a conversation of `queue`."""
    return [CannedOption(c.id, c.name, c.queue)
            for c in await canned.listed(session, staff, queue=queue)]


@dataclass(frozen=True, slots=True)
class FilesOffer:
    """What the reply form's file input says: the channels that carry files, and the limits."""

    channels: tuple[str, ...]
    accept: str
    count: int
    size: str


def files_offer(adapters: AdapterRegistry, options: Iterable[ChannelOption],
                max_bytes: int) -> FilesOffer | None:
    """The file input's offer, or None when none of the contact's channels carries files."""
    carrying = tuple(o.channel for o in options
                     if not o.opted_out and adapters.carries_attachments(o.channel))
    if not carrying:
        return None
    return FilesOffer(carrying, ",".join(REPLY_TYPES), MAX_REPLY_FILES, size_label(max_bytes))


def sms_label(text: str, max_segments: int) -> str:
    """What the counter says of `text` once flattened for a phone."""
    count = segments(sms_text(text))
    plural = "segment" if count.count == 1 else "segments"
    label = f"SMS: {count.count} {plural} ({count.encoding}, {count.units} characters)"
    if count.count > max_segments:
        label += f": too long, at most {max_segments} segments are sent"
    return label


async def render_canned(request: web.Request) -> web.Response:
    conversation_id = int(request.match_info["id"])
    canned_id = int(request.match_info["canned_id"])

    def read(session: AsyncSession, staff: Staff) -> Awaitable[str]:
        return canned.rendered(session, staff, conversation_id, canned_id)

    return web.json_response({"text": await visible(request, read)})


async def sms_segments(request: web.Request) -> web.Response:
    text = (await request.post()).get("text", "")
    text = text[:MAX_TEXT] if isinstance(text, str) else ""
    max_segments = request.app[HUB_KEY].settings.sms.max_segments
    return web.json_response({"label": sms_label(text, max_segments)})
