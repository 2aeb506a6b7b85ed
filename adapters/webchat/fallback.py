"""The HTTP fallback of the chat, for networks whose proxies block WebSockets: the same frames
over plain requests under `/chat/api/`, the visitor's token in the `X-Chat-Token` header (never
in a URL, where logs and referrers would keep it).

`POST hello` -> welcome; `POST messages` -> ack (after commit, like the socket); `GET
events?after=ID` long-polls up to `POLL_SECONDS` for pushed frames, answering at once with the
messages after `after` when there are any; `POST typing`, `POST seen`; `POST attachments`
(multipart: client_id, file, optional body) stores an image or a PDF, checked by its content,
streamed with a cap of `[webchat] max_file_bytes`; `GET files/{id}/{signature}` shows a stored
file to whoever holds its link. Refusals are the protocol's `error` frames with a 4xx (429
with Retry-After), never a stack trace.

No CSRF token is needed: every request that changes something carries `X-Chat-Token`, a header
another site cannot send without a CORS preflight the hub never grants, and a request whose
`Origin` is neither the hub's nor an allowed site's is refused (403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web
from sqlalchemy import select

from hub.storage.tables import Attachment
from hub.web.addresses import client_address

from . import history
from .live import REFUSED, Connection
from .protocol import (
    BAD_REQUEST,
    FILE_TOO_LARGE,
    HTTP_STATUS,
    RATE_LIMITED,
    TOO_LONG,
    TOO_MANY_CONNECTIONS,
    UNAVAILABLE,
    ChatMessage,
    Hello,
    ProtocolError,
    Seen,
    Typing,
    error_frame,
    frame,
    parse,
    parse_message,
)
from .session import FILE_TYPES, Chat

if TYPE_CHECKING:
    from .inbound import WebchatAdapter

log = logging.getLogger(__name__)
API = "/chat/api"
TOKEN_HEADER = "X-Chat-Token"  # noqa: S105 (a header name, not a secret)
POLL_SECONDS = 25.0
MAX_FRAME_BYTES = 64 * 1024  # a JSON frame; a message's own cap is [webchat] max_body
MAX_PARTS = 4  # of an attachment's multipart body: client_id, body, file (and one spare)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(adapter: WebchatAdapter) -> list[web.RouteDef]:
    def guarded(handler: Callable[[web.Request, Chat], Awaitable[web.StreamResponse]]
                ) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            from .inbound import origin_allowed, refused_origin

            if not origin_allowed(request, adapter.settings, required=False):
                REFUSED.labels("origin").inc()
                return refused_origin()
            chat = adapter.chat_for(request)
            try:
                _count(request, chat)
                response = await handler(request, chat)
            except ProtocolError as error:
                response = _error(error, _language(request, chat))
            except web.HTTPException:
                raise
            except Exception as exc:  # the database away, a bug: an error frame, no trace
                log.error("chat request not handled: %s", type(exc).__name__)
                response = _error(ProtocolError(UNAVAILABLE), _language(request, chat))
            response.headers["Cache-Control"] = "no-store"
            return response

        return run

    return [web.post(f"{API}/hello", guarded(hello)),
            web.post(f"{API}/messages", guarded(messages)),
            web.get(f"{API}/events", guarded(events)),
            web.post(f"{API}/typing", guarded(typing)),
            web.post(f"{API}/seen", guarded(seen)),
            web.post(f"{API}/attachments", guarded(attachments)),
            web.get(f"{API}/files/{{attachment_id:[0-9]{{1,18}}}}/{{signature}}",
                    guarded(files))]


def _count(request: web.Request, chat: Chat) -> None:
    """A request of this address, refused past `REQUESTS_PER_MINUTE` (messages and
    attachments count against their own, finer limits as well)."""
    address = _address(request)
    wait = chat.requests.wait(address)
    if wait:
        raise ProtocolError(RATE_LIMITED, retry_after=wait, values={"seconds": wait})
    chat.requests.hit(address)


def _language(request: web.Request, chat: Chat) -> str:
    header = request.headers.get("Accept-Language", "")
    return chat.language(header.split(",")[0].strip() or None)


def _error(error: ProtocolError, language: str) -> web.Response:
    REFUSED.labels(error.code).inc()
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return web.json_response(error_frame(error, language), status=HTTP_STATUS[error.code],
                             headers=headers)


async def _frame(request: web.Request, chat: Chat) -> Any:
    too_long = ProtocolError(TOO_LONG, values={"max": chat.config.max_body})
    if request.content_length is not None and request.content_length > MAX_FRAME_BYTES:
        raise too_long
    body = await request.content.read(MAX_FRAME_BYTES + 1)
    if len(body) > MAX_FRAME_BYTES:
        raise too_long
    try:
        return parse(json.loads(body))
    except ValueError:
        raise ProtocolError(BAD_REQUEST) from None


def _connection(request: web.Request, chat: Chat, *, client_id: str | None = None) -> Connection:
    """The visitor the token header names; requests after hello need a genuine one."""
    from .visitors import verify_token

    visitor = verify_token(request.headers.get(TOKEN_HEADER), chat.secret)
    if visitor is None:
        raise ProtocolError(BAD_REQUEST, client_id=client_id)
    return Connection(visitor, _language(request, chat), _address(request), held=None)


def _address(request: web.Request) -> str:
    return str(client_address(request) or "unknown")


async def hello(request: web.Request, chat: Chat) -> web.StreamResponse:
    incoming = await _frame(request, chat)
    if not isinstance(incoming, Hello):
        raise ProtocolError(BAD_REQUEST)
    visitor = chat.visitor(request.headers.get(TOKEN_HEADER) or incoming.token)
    conn = Connection(visitor, chat.language(incoming.language), _address(request), held=None)
    return web.json_response(await chat.welcome(conn, incoming.after))


async def messages(request: web.Request, chat: Chat) -> web.StreamResponse:
    incoming = await _frame(request, chat)
    if not isinstance(incoming, ChatMessage):
        raise ProtocolError(BAD_REQUEST)
    conn = _connection(request, chat, client_id=incoming.client_id)
    return web.json_response(await chat.message(conn, incoming))


async def typing(request: web.Request, chat: Chat) -> web.StreamResponse:
    incoming = await _frame(request, chat)
    if not isinstance(incoming, Typing):
        raise ProtocolError(BAD_REQUEST)
    conn = _connection(request, chat)
    async with chat.hub.db.read() as session:
        chat.live.watch(conn, await history.current_conversation(session, conn.visitor))
    chat.typing(conn, incoming.on)
    return web.json_response(frame("ok"))


async def seen(request: web.Request, chat: Chat) -> web.StreamResponse:
    incoming = await _frame(request, chat)
    if not isinstance(incoming, Seen):
        raise ProtocolError(BAD_REQUEST)
    chat.seen(_connection(request, chat), incoming.id)
    return web.json_response(frame("ok"))


async def events(request: web.Request, chat: Chat) -> web.StreamResponse:
    conn = _connection(request, chat)
    given = request.query.get("after", "")
    # Anything but a message id ("", "undefined") means: no history, only what comes next.
    after = int(given) if given.isdigit() and len(given) < 19 else None
    if not chat.connections.acquire(conn.address):
        raise ProtocolError(TOO_MANY_CONNECTIONS, retry_after=5)
    chat.live.add(conn, chat.hub.events)  # before the read: nothing pushed meanwhile is missed
    await chat.presence.arrive(conn.visitor)
    try:
        found = await _since(chat, conn, after)
        if not found:
            found = await _wait(conn, POLL_SECONDS)
        return web.json_response(frame("batch", events=found + _drain(conn)))
    finally:
        chat.live.remove(conn)
        chat.connections.release(conn.address)
        await asyncio.shield(chat.presence.leave(conn.visitor))


async def _since(chat: Chat, conn: Connection, after: int | None) -> list[dict[str, Any]]:
    async with chat.hub.db.read() as session:
        conversation = await history.current_conversation(session, conn.visitor)
        found = (await history.messages_after(session, conversation.id, after, chat.secret)
                 if conversation is not None and after is not None else [])
    chat.live.watch(conn, conversation)
    conn.sent_ids.update(message["id"] for message in found)
    return found


async def _wait(conn: Connection, seconds: float) -> list[dict[str, Any]]:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            return [await conn.queue.get()]
    return []


def _drain(conn: Connection) -> list[dict[str, Any]]:
    found = []
    while not conn.queue.empty():
        found.append(conn.queue.get_nowait())
    return found


async def attachments(request: web.Request, chat: Chat) -> web.StreamResponse:
    # The token and the declared size first: a stranger's upload, or one too large, is
    # refused before a byte of its body is read.
    conn = _connection(request, chat)
    limit = chat.config.max_file_bytes + MAX_PARTS * MAX_FRAME_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise ProtocolError(TOO_LONG, text=FILE_TOO_LARGE,
                            values={"max": round(chat.config.max_file_bytes / 1e6, 1)})
    fields, filename, data = await _multipart(request, chat.config.max_file_bytes)
    client_id = fields.get("client_id")
    try:
        message = parse_message({"client_id": client_id, "body": fields.get("body", "")})
    except ValueError:
        raise ProtocolError(BAD_REQUEST) from None
    if data is None:
        raise ProtocolError(BAD_REQUEST, client_id=message.client_id)
    return web.json_response(await chat.attachment(conn, message, filename, data))


async def _multipart(request: web.Request, max_file: int
                     ) -> tuple[dict[str, str], str, bytes | None]:
    """The form's text fields, and its file read part by part, never more than the cap: one
    file, at most `MAX_PARTS` parts, each other part capped too (a body of endless parts, or
    of many files, is refused, not read to its end)."""
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError, KeyError):
        raise ProtocolError(BAD_REQUEST) from None
    fields: dict[str, str] = {}
    filename, data = "", None
    for _ in range(MAX_PARTS + 1):
        part = await reader.next()
        if part is None:
            return fields, filename, data
        if not isinstance(part, BodyPartReader):
            raise ProtocolError(BAD_REQUEST)
        if part.name == "file" and data is None:
            filename = part.filename or "file"
            try:
                data = await _capped(part, max_file)
            except ProtocolError as error:  # the widget sends client_id first: name it
                error.client_id = fields.get("client_id")
                raise
        elif part.name in ("client_id", "body") and len(fields) < 2:
            fields[part.name] = (await _capped(part, MAX_FRAME_BYTES)).decode("utf-8", "replace")
        else:
            await _capped(part, MAX_FRAME_BYTES)  # read (within a cap) and forgotten
    raise ProtocolError(BAD_REQUEST, client_id=fields.get("client_id"))


async def _capped(part: BodyPartReader, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(65_536):
        size += len(chunk)
        if size > limit:
            raise ProtocolError(TOO_LONG, text=FILE_TOO_LARGE,
                                values={"max": round(limit / 1e6, 1)})
        chunks.append(chunk)
    return b"".join(chunks)


async def files(request: web.Request, chat: Chat) -> web.StreamResponse:
    attachment_id = int(request.match_info["attachment_id"])
    if not history.file_signature_ok(attachment_id, request.match_info["signature"],
                                     chat.secret):
        raise web.HTTPNotFound()
    async with chat.hub.db.read() as session:
        row = await session.scalar(select(Attachment).where(Attachment.id == attachment_id))
    if row is None:
        raise web.HTTPNotFound()
    data = await chat.hub.blobs.get(row.sha256)
    shown = row.content_type if row.content_type in FILE_TYPES else "application/octet-stream"
    disposition = "inline" if shown.startswith("image/") else "attachment"
    return web.Response(body=data, content_type=shown, headers={
        "Content-Disposition": f'{disposition}; filename="attachment-{attachment_id}"',
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox"})

