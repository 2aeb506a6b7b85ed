"""The staff API (`/api/v1`): its route table and handlers, as CONTRACT.md lists them.

Handlers are thin: parse (hub.web.parsing), check visibility (hub.web.views), change state in one
transaction with its audit entry, then, after the commit, hand outbox ids to the jobs and publish
an event. The route table also feeds the OpenAPI document (hub.web.openapi).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.events import Event
from hub.model import Direction, utcnow
from hub.outbound import NoAddressOnChannel, outbox_id_for, queue_outbound
from hub.queues import member_queue_names, visible_queue_names
from hub.staff import StaffError, add_staff, find_staff
from hub.storage.tables import (
    Attachment,
    Contact,
    Conversation,
    Identity,
    Message,
    OutboxItem,
    Queue,
    QueueMember,
    Staff,
)
from hub.web import cursor
from hub.web.auth_mw import guarded, install
from hub.web.errors import ApiError
from hub.web.keys import HUB_KEY, caller
from hub.web.live import events_socket
from hub.web.openapi import Route, document
from hub.web.parsing import read_body, read_query
from hub.web.schemas import (
    AssignIn,
    ClaimIn,
    ContactDetail,
    ConversationDetail,
    ConversationItem,
    ConversationList,
    ConversationQuery,
    IdentityOut,
    MessageCreated,
    NoteIn,
    OutboxItemOut,
    OutboxList,
    OutboxQuery,
    QueueOut,
    ReplyIn,
    StaffIn,
    StaffList,
    StaffOut,
    StatusIn,
    TransferIn,
)
from hub.web.views import (
    API,
    conversation_detail,
    conversation_items,
    load_conversation,
    not_found,
    open_counts,
    visible_filter,
)

OPENAPI_KEY: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document", dict)
Change = Callable[[AsyncSession, Conversation], Awaitable[dict[str, Any] | None]]
SAFE_INLINE_TYPES = re.compile(r"^(image/(png|jpeg|gif|webp)|application/pdf|text/plain)$")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                        content_type="application/json")


def _json_list(models: Sequence[BaseModel]) -> web.Response:
    text = "[" + ",".join(m.model_dump_json() for m in models) + "]"
    return web.Response(text=text, content_type="application/json")


def _id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


def _publish(request: web.Request, conversation: Conversation, action: str,
             **data: Any) -> None:
    request.app[HUB_KEY].events.publish(Event(
        "conversation.updated", conversation.id, conversation.queue,
        {"action": action, "actor": caller(request).email, **data}))


# -- reading ----------------------------------------------------------------------------------


async def list_queues(request: web.Request) -> web.Response:
    async with request.app[HUB_KEY].db.read() as session:
        visible = await visible_queue_names(session, caller(request).staff)
        query = select(Queue).order_by(Queue.name)
        if visible is not None:
            query = query.where(Queue.name.in_(sorted(visible)))
        queues = list(await session.scalars(query))
        counts = await open_counts(session)
    return _json_list([QueueOut(name=q.name, title=q.title, open=counts.get((q.name, "open"), 0),
                                pending=counts.get((q.name, "pending"), 0),
                                declared=q.declared, strategy=q.strategy) for q in queues])


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _filtered(query: Any, params: ConversationQuery, secret: bytes) -> Any:
    if params.queue is not None:
        query = query.where(Conversation.queue == params.queue)
    if params.status is not None:
        query = query.where(Conversation.status == params.status)
    if params.channel is not None:
        query = query.where(Conversation.channel == params.channel)
    if params.q is not None:
        pattern = _like(params.q)
        in_body = exists().where(Message.conversation_id == Conversation.id,
                                 Message.body.ilike(pattern, escape="\\"))
        query = query.where(or_(Conversation.subject.ilike(pattern, escape="\\"), in_body))
    if params.cursor is not None:
        at, last_id = cursor.decode_time_id(secret, "conversations", params.cursor)
        query = query.where(or_(Conversation.last_message_at < at,
                                and_(Conversation.last_message_at == at,
                                     Conversation.id < last_id)))
    return query


async def list_conversations(request: web.Request) -> web.Response:
    params = read_query(request, ConversationQuery)
    hub = request.app[HUB_KEY]
    async with hub.db.read() as session:
        query = select(Conversation).where(await visible_filter(session, caller(request)))
        query = _filtered(query, params, hub.reply_secret)
        query = query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc())
        rows = list(await session.scalars(query.limit(params.limit + 1)))
        page = rows[:params.limit]
        items = await conversation_items(session, page)
    next_cursor = None
    if len(rows) > params.limit:
        next_cursor = cursor.encode_time_id(hub.reply_secret, "conversations",
                                            page[-1].last_message_at, page[-1].id)
    return _json(ConversationList(items=items, next_cursor=next_cursor))


async def get_conversation(request: web.Request) -> web.Response:
    async with request.app[HUB_KEY].db.read() as session:
        conversation = await load_conversation(session, caller(request), _id(request))
        detail = await conversation_detail(session, conversation)
    return _json(detail)


async def get_contact(request: web.Request) -> web.Response:
    who = caller(request)
    async with request.app[HUB_KEY].db.read() as session:
        contact = await session.get(Contact, _id(request))
        if contact is None:
            raise not_found("contact")
        conversations = list(await session.scalars(
            select(Conversation).where(Conversation.contact_id == contact.id,
                                       await visible_filter(session, who))
            .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())))
        if not conversations and not who.sees_all:
            raise not_found("contact")
        identities = await session.scalars(
            select(Identity).where(Identity.contact_id == contact.id).order_by(Identity.id))
        detail = ContactDetail(
            id=contact.id, name=contact.name, language=contact.language,
            created_at=contact.created_at,
            identities=[IdentityOut(channel=i.channel, address=i.address) for i in identities],
            conversations=await conversation_items(session, conversations))
    return _json(detail)


def _disposition(filename: str) -> str:
    fallback = re.sub(r'[^A-Za-z0-9._ -]', "_", filename)[:150] or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename[:200])}"


async def get_attachment(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    async with hub.db.read() as session:
        attachment = await session.scalar(
            select(Attachment).join(Message, Message.id == Attachment.message_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Attachment.id == _id(request), await visible_filter(session, caller(request))))
    if attachment is None:
        raise not_found("attachment")
    path = hub.blobs.path_for(attachment.sha256)
    if not path.is_file():
        raise ApiError(404, "not_found", "attachment content is missing from storage")
    content_type = attachment.content_type.lower()
    return web.FileResponse(path, headers={
        "Content-Type": content_type if SAFE_INLINE_TYPES.match(content_type)
        else "application/octet-stream",
        "Content-Disposition": _disposition(attachment.filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
    })


# -- acting on a conversation -----------------------------------------------------------------


async def _act(request: web.Request, action: str, change: Change) -> web.Response:
    """Run `change` on a visible conversation in one transaction, audit it, then publish."""
    who = caller(request)
    async with request.app[HUB_KEY].db.transaction() as session:
        conversation = await load_conversation(session, who, _id(request), for_update=True)
        detail = await change(session, conversation)
        if detail is not None:
            audit.record(session, who.email, f"conversation.{action}", "conversation",
                         conversation.id, **detail)
        [item] = await conversation_items(session, [conversation])
    if detail is not None:
        _publish(request, conversation, action, **detail)
    return _json(item)


async def post_reply(request: web.Request) -> web.Response:
    data = await read_body(request, ReplyIn)
    hub, who = request.app[HUB_KEY], caller(request)
    async with hub.db.transaction() as session:
        conversation = await load_conversation(session, who, _id(request), for_update=True)
        channel = data.channel or conversation.channel
        if hub.adapters.get(channel) is None:
            raise ApiError(422, "channel_unavailable", f"channel: {channel} is not configured")
        try:
            message = await queue_outbound(session, conversation, data.body,
                                           staff_id=who.staff.id, channel=channel)
        except NoAddressOnChannel as exc:
            raise ApiError(422, "no_address", f"channel: {exc}") from None
        outbox_id = await outbox_id_for(session, message.id)
        audit.record(session, who.email, "conversation.reply", "conversation", conversation.id,
                     message_id=message.id, channel=channel)
    hub.jobs.submit_delivery([outbox_id])
    hub.events.publish(Event("message.outbound", conversation.id, conversation.queue,
                             {"message_id": message.id, "actor": who.email}))
    _publish(request, conversation, "reply", message_id=message.id)
    return _json(MessageCreated(message_id=message.id), status=202)


async def post_note(request: web.Request) -> web.Response:
    data = await read_body(request, NoteIn)
    hub, who = request.app[HUB_KEY], caller(request)
    async with hub.db.transaction() as session:
        conversation = await load_conversation(session, who, _id(request), for_update=True)
        note = Message(conversation_id=conversation.id, direction=Direction.NOTE.value,
                       channel=conversation.channel, body=data.body, staff_id=who.staff.id,
                       flags=[], meta={}, created_at=utcnow())
        session.add(note)
        await session.flush()
        audit.record(session, who.email, "conversation.note", "conversation", conversation.id,
                     message_id=note.id)
    _publish(request, conversation, "note", message_id=note.id)
    return _json(MessageCreated(message_id=note.id), status=201)


async def post_claim(request: web.Request) -> web.Response:
    await read_body(request, ClaimIn)
    me = caller(request).staff

    async def change(session: AsyncSession, conversation: Conversation) -> dict[str, Any] | None:
        if conversation.assignee_id == me.id:
            return None
        if conversation.assignee_id is not None:
            raise ApiError(409, "conflict", "the conversation is assigned to someone else; "
                           "a supervisor can reassign it")
        conversation.assignee_id = me.id
        return {"assignee": me.email}

    return await _act(request, "claim", change)


async def _may_work(session: AsyncSession, staff: Staff, queue: str | None) -> bool:
    if staff.role in ("supervisor", "admin"):
        return True
    return queue is not None and queue in await member_queue_names(session, staff)


async def post_assign(request: web.Request) -> web.Response:
    data = await read_body(request, AssignIn)

    async def change(session: AsyncSession, conversation: Conversation) -> dict[str, Any] | None:
        staff = await find_staff(session, data.staff) if data.staff is not None else None
        if data.staff is not None and (staff is None or not staff.active):
            raise ApiError(422, "unknown_staff", "staff: no active staff member has that email")
        if staff is not None and not await _may_work(session, staff, conversation.queue):
            raise ApiError(422, "not_a_member",
                           f"staff: {staff.email} is not a member of queue {conversation.queue}")
        new_id = staff.id if staff is not None else None
        if conversation.assignee_id == new_id:
            return None
        conversation.assignee_id = new_id
        return {"assignee": staff.email if staff is not None else None}

    return await _act(request, "assign", change)


async def post_transfer(request: web.Request) -> web.Response:
    data = await read_body(request, TransferIn)

    async def change(session: AsyncSession, conversation: Conversation) -> dict[str, Any] | None:
        if await session.scalar(select(Queue.id).where(Queue.name == data.queue)) is None:
            raise ApiError(422, "unknown_queue", f"queue: there is no queue {data.queue!r}")
        if conversation.queue == data.queue:
            return None
        old = conversation.queue
        conversation.queue = data.queue
        if conversation.assignee_id is not None:
            assignee = await session.get_one(Staff, conversation.assignee_id)
            if not await _may_work(session, assignee, data.queue):
                conversation.assignee_id = None
        return {"from": old, "to": data.queue}

    return await _act(request, "transfer", change)


async def post_status(request: web.Request) -> web.Response:
    data = await read_body(request, StatusIn)

    async def change(session: AsyncSession, conversation: Conversation) -> dict[str, Any] | None:
        if conversation.status == data.status:
            return None
        old = conversation.status
        conversation.status = data.status
        if data.status == "resolved":
            conversation.resolved_at = utcnow()
        elif data.status in ("open", "pending"):
            conversation.resolved_at = None
        return {"from": old, "to": data.status}

    return await _act(request, "status", change)


# -- administration ---------------------------------------------------------------------------


async def _staff_out(session: AsyncSession, people: Sequence[Staff]) -> list[StaffOut]:
    rows = await session.execute(
        select(QueueMember.staff_id, Queue.name).join(Queue, Queue.id == QueueMember.queue_id)
        .where(QueueMember.staff_id.in_([s.id for s in people])).order_by(Queue.name))
    queues: dict[int, list[str]] = {}
    for staff_id, name in rows:
        queues.setdefault(staff_id, []).append(name)
    return [StaffOut(id=s.id, email=s.email, name=s.name, role=s.role, active=s.active,
                     queues=queues.get(s.id, []), created_at=s.created_at) for s in people]


async def list_staff(request: web.Request) -> web.Response:
    async with request.app[HUB_KEY].db.read() as session:
        people = list(await session.scalars(select(Staff).order_by(Staff.email)))
        items = await _staff_out(session, people)
    return _json(StaffList(items=items))


async def create_staff(request: web.Request) -> web.Response:
    data = await read_body(request, StaffIn)
    who = caller(request)
    async with request.app[HUB_KEY].db.transaction() as session:
        if await find_staff(session, data.email) is not None:
            raise ApiError(409, "conflict", "email: a staff member with that email exists")
        try:
            staff = await add_staff(session, data.email, name=data.name, role=data.role,
                                    queues=data.queues, actor=who.email)
        except StaffError as exc:
            raise ApiError(422, "invalid_field", str(exc)) from None
        [out] = await _staff_out(session, [staff])
    return _json(out, status=201)


async def list_outbox(request: web.Request) -> web.Response:
    params = read_query(request, OutboxQuery)
    hub = request.app[HUB_KEY]
    kind = f"outbox:{params.state}"
    query = (select(OutboxItem, Message.conversation_id)
             .join(Message, Message.id == OutboxItem.message_id)
             .where(OutboxItem.state == params.state))
    if params.cursor is not None:
        last_id = cursor.decode(hub.reply_secret, kind, params.cursor).get("i")
        if not isinstance(last_id, int):
            raise ApiError(400, "bad_cursor", "cursor is not valid")
        query = query.where(OutboxItem.id < last_id)
    async with hub.db.read() as session:
        rows = list(await session.execute(
            query.order_by(OutboxItem.id.desc()).limit(params.limit + 1)))
    items = [_outbox_out(item, conversation_id) for item, conversation_id in rows]
    page = items[:params.limit]
    next_cursor = (cursor.encode(hub.reply_secret, kind, {"i": page[-1].id})
                   if len(items) > params.limit else None)
    return _json(OutboxList(items=page, next_cursor=next_cursor))


def _outbox_out(item: OutboxItem, conversation_id: int) -> OutboxItemOut:
    return OutboxItemOut(
        id=item.id, message_id=item.message_id, conversation_id=conversation_id,
        channel=item.channel, state=item.state, attempts=item.attempts,
        last_error=item.last_error, next_attempt_at=item.next_attempt_at,
        created_at=item.created_at, updated_at=item.updated_at)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


# -- the table --------------------------------------------------------------------------------

SUPERVISORS = ("supervisor", "admin")
CONV = f"{API}/conversations/{{id}}"

ROUTES: tuple[Route, ...] = (
    Route("GET", f"{API}/openapi.json", openapi_json, "This document", public=True),
    Route("GET", f"{API}/queues", list_queues, "Queues the caller works, with open counts",
          QueueOut, response_list=True, description="Agents see the queues they belong to."),
    Route("GET", f"{API}/conversations", list_conversations, "Conversations the caller may see",
          ConversationList, query=ConversationQuery,
          description="Newest activity first (last_message_at, then id, descending); "
                      "keyset pagination through `next_cursor`."),
    Route("GET", CONV, get_conversation, "One conversation with messages and routing",
          ConversationDetail),
    Route("POST", f"{CONV}/replies", post_reply, "Reply to the citizen", MessageCreated,
          status=202, body=ReplyIn,
          description="Queued for delivery; the message's delivery_status follows it. Goes out "
                      "on the conversation's channel unless `channel` names another. 422 when "
                      "the channel is not configured or the contact has no address on it."),
    Route("POST", f"{CONV}/notes", post_note, "Add an internal note", MessageCreated,
          status=201, body=NoteIn),
    Route("POST", f"{CONV}/claim", post_claim, "Assign the conversation to the caller",
          ConversationItem, body=ClaimIn, errors=(400, 401, 404, 409, 422, 429),
          description="409 when someone else holds it (use assign)."),
    Route("POST", f"{CONV}/assign", post_assign, "Assign to a staff member (null unassigns)",
          ConversationItem, body=AssignIn,
          description="The assignee must belong to the conversation's queue, or be a "
                      "supervisor or admin; otherwise 422."),
    Route("POST", f"{CONV}/transfer", post_transfer, "Move to another queue", ConversationItem,
          body=TransferIn,
          description="The target queue must exist (422 otherwise). An agent may transfer a "
                      "conversation out of their queue into any existing queue, after which "
                      "they may no longer see it. An assignee who does not belong to the new "
                      "queue is unassigned."),
    Route("POST", f"{CONV}/status", post_status, "Set the status", ConversationItem,
          body=StatusIn, description="`resolved` sets resolved_at; open and pending clear it."),
    Route("GET", f"{API}/contacts/{{id}}", get_contact,
          "A contact with every identity and the conversations the caller may see",
          ContactDetail,
          description="Agents get 404 for a contact with no conversation in their queues."),
    Route("GET", f"{API}/attachments/{{id}}", get_attachment, "Download an attachment",
          media_type="application/octet-stream",
          description="Served as a download (Content-Disposition: attachment, nosniff)."),
    Route("GET", f"{API}/staff", list_staff, "Staff accounts", StaffList, roles=("admin",)),
    Route("POST", f"{API}/staff", create_staff, "Add a staff account", StaffOut, status=201,
          body=StaffIn, roles=("admin",), errors=(400, 401, 409, 422, 429)),
    Route("GET", f"{API}/outbox", list_outbox, "Outbox items by state (default: dead letter)",
          OutboxList, query=OutboxQuery, roles=SUPERVISORS,
          description="`state=dead` lists deliveries that failed for good, with last_error."),
    Route("GET", f"{API}/events", events_socket, "Live events (WebSocket)", status=101,
          errors=(401, 426, 429),
          description="Upgrade to a WebSocket; each text frame is one event "
                      "`{\"kind\", \"conversation_id\", \"queue\", ...}` of a queue the caller "
                      "may see. With `[redis] url`, events of every hub process arrive."),
)


def setup_api(app: web.Application) -> None:
    hub = app[HUB_KEY]
    install(app, hub.settings.security.api_rate_per_minute)
    app[OPENAPI_KEY] = document(ROUTES)
    for route in ROUTES:
        handler = route.handler if route.public else guarded(route.handler, route.roles)
        app.router.add_route(route.method, route.aiohttp_path, handler)

