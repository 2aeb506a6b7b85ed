"""A reply with files, as `multipart/form-data`: the staff API's (`POST
/api/v1/conversations/{id}/replies`, fields `body`, `channel`, `after_message_id`, files
`attachment`) and the workspace's reply form.

`[http] max_body_bytes` suits JSON and is far smaller than the files a reply may carry, so
these bodies get a budget of their own: every file at `[hub] max_reply_attachment_bytes`, one
file more than allowed (so the checker can say "too many"), and room for the text. The API
streams the parts against it; the workspace's form is parsed by aiohttp (its CSRF check reads
the form first), so `upload_room` raises aiohttp's body limit for that one path before the
guard runs. Whether each file may be sent is hub.reply_files' to say.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web
from multidict import MultiDictProxy

from hub.reply_files import MAX_REPLY_FILES
from hub.web.errors import ApiError
from hub.web.keys import HUB_KEY
from hub.web.multipart import ReadBudget, read_part

FILE_FIELD = "attachment"
TEXT_FIELDS = ("body", "channel", "after_message_id")
TEXT_ROOM = 1_048_576  # the text parts together: a reply's body is at most 100,000 characters
REPLY_PATH = re.compile(r"^/staff/conversations/\d{1,18}/reply$")
Files = list[tuple[str, bytes]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def upload_limit(max_file_bytes: int) -> int:
    return (MAX_REPLY_FILES + 1) * (max_file_bytes + 1) + TEXT_ROOM


def is_multipart(request: web.Request) -> bool:
    return request.content_type == "multipart/form-data"


async def read_reply_form(request: web.Request) -> tuple[dict[str, Any], Files]:
    """The API's multipart reply: its text fields (after_message_id as a number when it is
    one) and its files. Unknown fields are 400, a body over the budget 413."""
    max_file = request.app[HUB_KEY].settings.hub.max_reply_attachment_bytes
    budget = ReadBudget(upload_limit(max_file), _too_large)
    fields: dict[str, Any] = {}
    files: Files = []
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "bad_request", "nested multipart bodies are not accepted")
            await _take(part, fields, files, budget, max_file)
    except (ValueError, AssertionError, KeyError):  # no boundary, broken framing
        raise ApiError(400, "bad_request", "the multipart body cannot be parsed") from None
    after = fields.get("after_message_id")
    if isinstance(after, str) and after.isdigit() and len(after) <= 18:
        fields["after_message_id"] = int(after)
    return fields, files


async def _take(part: BodyPartReader, fields: dict[str, Any], files: Files, budget: ReadBudget,
                max_file: int) -> None:
    name = part.name or ""
    if name == FILE_FIELD and part.filename is not None:
        data = await read_part(part, max_file + 1, budget)  # one byte over says "too large"
        files.append((part.filename, data))
    elif name in TEXT_FIELDS and part.filename is None:
        if name in fields:
            raise ApiError(400, "bad_request", f"field given twice: {name!r}")
        fields[name] = (await read_part(part, TEXT_ROOM, budget)).decode("utf-8", "replace")
    else:
        raise ApiError(400, "unknown_field", f"unknown body field(s): {name!r}")


async def posted_files(posted: MultiDictProxy[Any]) -> Files:
    """The workspace form's files (aiohttp's FileFields; an empty file input has no name),
    read on a thread: aiohttp keeps a large one in a temporary file on disk."""
    found: Files = []
    for value in posted.getall(FILE_FIELD, []):
        if isinstance(value, web.FileField) and value.filename:
            found.append((value.filename, await asyncio.to_thread(value.file.read)))
    return found


@web.middleware
async def upload_room(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The workspace's reply form may carry files: a body limit to fit them, on that path."""
    if request.method == "POST" and is_multipart(request) and REPLY_PATH.match(request.path):
        max_file = request.app[HUB_KEY].settings.hub.max_reply_attachment_bytes
        request = request.clone(client_max_size=upload_limit(max_file))
    return await handler(request)


def _too_large(limit: int, used: int) -> Exception:
    return ApiError(413, "payload_too_large", f"the request body is larger than {limit} bytes")
