"""Reading a citizen form's body (multipart with files, or URL-encoded) with limits of its own.

`[http] max_body_bytes` is small (it suits JSON), so form posts are streamed part by part
instead: a text part is cut at TEXT_LIMIT, a file part is kept up to its field's size limit plus
one byte (enough for the validator to say "too large") and the rest is read and dropped, and the
whole body may not pass the form's own total (every file at its limit, plus room for text), else
413. Nothing is judged here: hub.forms.validate does that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from hub.forms.schema import FormField
from hub.web.multipart import ReadBudget, read_part

TEXT_LIMIT = 64 * 1024  # per text part: more than any form field takes
TEXT_ROOM = 1024 * 1024  # the text parts together
MAX_PARTS = 200
Files = dict[str, list[tuple[str, str, bytes]]]


@dataclass
class Body:
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: Files = field(default_factory=dict)

    def one(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0] if values else ""

    def all(self, name: str) -> list[str]:
        return self.fields.get(name, [])


def body_limit(fields: Sequence[FormField]) -> int:
    return sum(f.bytes_limit * f.max_files for f in fields if f.type == "file") + TEXT_ROOM


async def read_body(request: web.Request, fields: Sequence[FormField] = ()) -> Body:
    """The posted fields and the files of `fields`' file fields (other files are dropped)."""
    if request.content_type == "multipart/form-data":
        try:
            return await _multipart(request, fields)
        except (ValueError, AssertionError, KeyError) as exc:  # no boundary, broken framing
            raise web.HTTPBadRequest() from exc
    if request.content_type == "application/x-www-form-urlencoded":
        posted = await request.post()
        body = Body()
        for key, value in posted.items():
            if isinstance(value, str):
                body.fields.setdefault(key, []).append(value[:TEXT_LIMIT])
        return body
    raise web.HTTPUnsupportedMediaType()


async def _multipart(request: web.Request, fields: Sequence[FormField]) -> Body:
    limits = {f.id: f.bytes_limit for f in fields if f.type == "file"}
    budget = ReadBudget(body_limit(fields), _too_large)
    body = Body()
    reader = await request.multipart()
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            return body
        if not isinstance(part, BodyPartReader) or not part.name:
            continue  # a nested multipart or a nameless part: no form sends one
        if part.filename is not None:
            await _file(part, limits, body.files, budget)
        else:
            text = await read_part(part, TEXT_LIMIT, budget)
            body.fields.setdefault(part.name, []).append(text.decode("utf-8", "replace"))
    raise web.HTTPRequestEntityTooLarge(max_size=budget.limit, actual_size=budget.limit)


async def _file(part: BodyPartReader, limits: Mapping[str, int], files: Files,
                budget: ReadBudget) -> None:
    name = part.name or ""
    if name not in limits:
        await read_part(part, 0, budget)  # not a file field of this form: dropped
        return
    data = await read_part(part, limits[name] + 1, budget)
    if data:
        content_type = part.headers.get("Content-Type", "application/octet-stream")
        files.setdefault(name, []).append(((part.filename or "file")[:255], content_type, data))


def _too_large(limit: int, used: int) -> Exception:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=used)
