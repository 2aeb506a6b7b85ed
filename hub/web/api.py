"""The staff API (`/api/v1`): its route table and handlers, as CONTRACT.md lists them.

Handlers are thin: parse (hub.web.parsing), call hub.service (visibility and the conversation
actions) or hub.setaside (what was set aside), present the result (hub.web.views). The service's
refusals become the API's JSON errors in one place (`_refusals`). The route table also feeds the
OpenAPI document (hub.web.openapi).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import canned, service, setaside
from hub.contacts import merge_contacts
from hub.model import OutboundAttachment
from hub.reply_files import MAX_REPLY_FILES, REPLY_TYPES, checked_files
from hub.service import ADMINS, SUPERVISORS, ConversationFilter
from hub.staff import StaffError, add_staff, find_staff
from hub.storage.tables import (
    CannedResponse,
    Conversation,
    Message,
    OutboxItem,
    Queue,
    QueueMember,
    Staff,
)
from hub.web import cursor
from hub.web.auth_mw import guarded, install, reading
from hub.web.errors import ApiError
from hub.web.keys import HUB_KEY, caller
from hub.web.live import events_socket
from hub.web.openapi import Handler, Route, document
from hub.web.parsing import read_body, read_query, validation_error
from hub.web.reply_upload import FILE_FIELD, is_multipart, read_reply_form
from hub.web.schemas import (
    AssignIn,
    CannedIn,
    CannedList,
    CannedOut,
    CannedQuery,
    ClaimIn,
    ContactDetail,
    ConversationDetail,
    ConversationItem,
    ConversationList,
    ConversationQuery,
    MergeIn,
    MessageCreated,
    NoteIn,
    OutboxItemOut,
    OutboxList,
    OutboxQuery,
    QueueOut,
    RenderedOut,
    ReplyIn,
    RetriedOut,
    RetryIn,
    RulesStatus,
    SpoolDetailOut,
    SpoolItemOut,
    SpoolList,
    SpoolQuery,
    StaffIn,
    StaffList,
    StaffOut,
    StatusIn,
    TransferIn,
)
from hub.web.stats_api import StatsOut, StatsParams, get_stats, get_stats_csv
from hub.web.views import (
    API,
    contact_detail,
    conversation_detail,
    conversation_items,
    conversation_list,
    open_counts,
)

OPENAPI_KEY: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document", dict)
SAFE_INLINE_TYPES = re.compile(r"^(image/(png|jpeg|gif|webp)|application/pdf|text/plain)$")
_SERVICE_STATUS: dict[type[service.ServiceError], int] = {
    service.NotFound: 404, service.Conflict: 409}  # any other refusal: 422


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                        content_type="application/json")


def _json_list(models: Sequence[BaseModel]) -> web.Response:
    text = "[" + ",".join(m.model_dump_json() for m in models) + "]"
    return web.Response(text=text, content_type="application/json")


def _id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


def _api_error(exc: service.ServiceError | setaside.SetAsideError) -> ApiError:
    if isinstance(exc, service.ServiceError):
        return ApiError(_SERVICE_STATUS.get(type(exc), 422), exc.code, exc.message)
    if isinstance(exc, setaside.NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, setaside.NotRetryable):
        return ApiError(409, "not_retryable", str(exc))
    return ApiError(422, "invalid_field", str(exc))


def _refusals(handler: Handler) -> Handler:
    """hub.service's and hub.setaside's refusals as the API's JSON errors."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (service.ServiceError, setaside.SetAsideError) as exc:
            raise _api_error(exc) from None

    return wrapper


# -- reading ----------------------------------------------------------------------------------


async def list_queues(request: web.Request) -> web.Response:
    async with reading(request) as session:
        queues = await service.queues_for(session, caller(request).staff)
        counts = await open_counts(session)
    return _json_list([QueueOut(name=q.name, title=q.title, open=counts.get((q.name, "open"), 0),
                                pending=counts.get((q.name, "pending"), 0),
                                declared=q.declared, strategy=q.strategy) for q in queues])


async def list_conversations(request: web.Request) -> web.Response:
    params = read_query(request, ConversationQuery)
    hub = request.app[HUB_KEY]
    after = (None if params.cursor is None
             else cursor.decode_time_id(hub.reply_secret, "conversations", params.cursor))
    where = ConversationFilter(queue=params.queue, status=params.status,
                               channel=params.channel, text=params.q, tag=params.tag,
                               priority=params.priority, assignee=params.assignee,
                               spam=params.spam, after=after)
    async with reading(request) as session:
        rows = await service.list_items(session, caller(request).staff, where,
                                        params.limit + 1)
        page = rows[:params.limit]
        next_cursor = None
        if len(rows) > params.limit:
            next_cursor = cursor.encode_time_id(hub.reply_secret, "conversations",
                                                page[-1].last_message_at, page[-1].id)
        answer = await conversation_list(session, page, next_cursor)
    return _json(answer)


async def get_conversation(request: web.Request) -> web.Response:
    async with reading(request) as session:
        row = await service.item_for(session, caller(request).staff, _id(request))
        detail = await conversation_detail(session, row)
    return _json(detail)


async def get_contact(request: web.Request) -> web.Response:
    async with reading(request) as session:
        contact, conversations = await service.contact_for(session, caller(request).staff,
                                                           _id(request))
        detail = await contact_detail(session, contact, conversations)
    return _json(detail)


async def merge_contact(request: web.Request) -> web.Response:
    data = await read_body(request, MergeIn)
    hub = request.app[HUB_KEY]
    contact = await merge_contacts(hub.db, caller(request).staff, _id(request),
                                   data.contact_id, publish=hub.events.publish)
    async with reading(request) as session:
        kept, conversations = await service.contact_for(session, caller(request).staff,
                                                        contact.id)
        detail = await contact_detail(session, kept, conversations)
    return _json(detail)


def disposition(filename: str, kind: str = "attachment") -> str:
    """A Content-Disposition header naming `filename` safely (ASCII fallback and RFC 5987)."""
    fallback = re.sub(r'[^A-Za-z0-9._ -]', "_", filename)[:150] or "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename[:200])}"


async def get_attachment(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    async with hub.db.read() as session:
        attachment = await service.attachment_for(session, caller(request).staff, _id(request))
    path = hub.blobs.path_for(attachment.sha256)
    if not path.is_file():
        raise ApiError(404, "not_found", "attachment content is missing from storage")
    content_type = attachment.content_type.lower()
    return web.FileResponse(path, headers={
        "Content-Type": content_type if SAFE_INLINE_TYPES.match(content_type)
        else "application/octet-stream",
        "Content-Disposition": disposition(attachment.filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox; frame-ancestors 'none'",
    })


# -- acting on a conversation -----------------------------------------------------------------


async def _item(request: web.Request, conversation: Conversation) -> web.Response:
    """The conversation as an action leaves it, visible to the caller or not (after a
    transfer an agent may no longer see it, but sees where it went)."""
    async with request.app[HUB_KEY].db.read() as session:
        [item] = await conversation_items(session, [conversation])
    return _json(item)


async def _reply_in(request: web.Request) -> tuple[ReplyIn, list[OutboundAttachment]]:
    """A JSON reply, or a multipart one with files (checked here: nothing stored if refused)."""
    if not is_multipart(request):
        return await read_body(request, ReplyIn), []
    fields, files = await read_reply_form(request)
    try:
        data = ReplyIn.model_validate(fields)
    except ValidationError as exc:
        raise validation_error(exc, "body") from None
    max_bytes = request.app[HUB_KEY].settings.hub.max_reply_attachment_bytes
    return data, checked_files(files, max_bytes)


async def post_reply(request: web.Request) -> web.Response:
    data, attachments = await _reply_in(request)
    hub = request.app[HUB_KEY]
    message = await service.reply(hub.db, caller(request).staff, _id(request), data.body,
                                  channel=data.channel, channels=hub.adapters,
                                  after_message_id=data.after_message_id,
                                  attachments=attachments, blobs=hub.blobs,
                                  submit_delivery=hub.jobs.submit_delivery,
                                  publish=hub.events.publish)
    return _json(MessageCreated(message_id=message.id), status=202)


async def post_note(request: web.Request) -> web.Response:
    data = await read_body(request, NoteIn)
    hub = request.app[HUB_KEY]
    message = await service.note(hub.db, caller(request).staff, _id(request), data.body,
                                 publish=hub.events.publish)
    return _json(MessageCreated(message_id=message.id), status=201)


async def post_claim(request: web.Request) -> web.Response:
    await read_body(request, ClaimIn)
    hub = request.app[HUB_KEY]
    conversation = await service.claim(hub.db, caller(request).staff, _id(request),
                                       publish=hub.events.publish)
    return await _item(request, conversation)


async def post_assign(request: web.Request) -> web.Response:
    data = await read_body(request, AssignIn)
    hub = request.app[HUB_KEY]
    conversation = await service.assign(hub.db, caller(request).staff, _id(request), data.staff,
                                        publish=hub.events.publish)
    return await _item(request, conversation)


async def post_transfer(request: web.Request) -> web.Response:
    data = await read_body(request, TransferIn)
    hub = request.app[HUB_KEY]
    conversation = await service.transfer(hub.db, caller(request).staff, _id(request),
                                          data.queue, publish=hub.events.publish)
    return await _item(request, conversation)


async def post_status(request: web.Request) -> web.Response:
    data = await read_body(request, StatusIn)
    hub = request.app[HUB_KEY]
    conversation = await service.set_status(
        hub.db, caller(request).staff, _id(request), data.status, publish=hub.events.publish,
        notify=hub.status_notices, submit_delivery=hub.jobs.submit_delivery)
    return await _item(request, conversation)


async def post_not_spam(request: web.Request) -> web.Response:
    await read_body(request, ClaimIn)
    hub = request.app[HUB_KEY]
    conversation = await service.not_spam(
        hub.db, caller(request).staff, _id(request), reroute=hub.intake.reroute,
        publish=hub.events.publish, submit_delivery=hub.jobs.submit_delivery)
    return await _item(request, conversation)


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


def _canned_out(canned: CannedResponse) -> CannedOut:
    return CannedOut(id=canned.id, name=canned.name, body=canned.body, queue=canned.queue,
                     created_by=canned.created_by, created_at=canned.created_at)


async def list_canned(request: web.Request) -> web.Response:
    params = read_query(request, CannedQuery)
    async with reading(request) as session:
        items = await canned.listed(session, caller(request).staff, queue=params.queue,
                                    text=params.q)
    return _json(CannedList(items=[_canned_out(c) for c in items],
                            placeholders=canned.PLACEHOLDERS))


async def create_canned(request: web.Request) -> web.Response:
    data = await read_body(request, CannedIn)
    async with request.app[HUB_KEY].db.transaction() as session:
        made = await canned.create(session, caller(request).staff,
                                   canned.CannedIn(data.name, data.body, data.queue))
    return _json(_canned_out(made), status=201)


async def delete_canned(request: web.Request) -> web.Response:
    async with request.app[HUB_KEY].db.transaction() as session:
        await canned.delete(session, caller(request).staff, _id(request))
    return web.Response(status=204)


async def render_canned(request: web.Request) -> web.Response:
    async with reading(request) as session:
        body = await canned.rendered(session, caller(request).staff, _id(request),
                                     _id(request, "canned_id"))
    return _json(RenderedOut(body=body))


async def rules_status(request: web.Request) -> web.Response:
    rules = request.app[HUB_KEY].rules
    if rules is None:
        return _json(RulesStatus(version="default", loaded_at=None, rules_dir=None, errors=[],
                                 last_refused=None))
    status = rules.status()
    return _json(RulesStatus(version=rules.version, loaded_at=status["loaded_at"],
                             rules_dir=status["rules_dir"], errors=status["errors"],
                             last_refused=status["last_refused"]))


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


# -- what was set aside ----------------------------------------------------------------------


async def list_spool(request: web.Request) -> web.Response:
    params = read_query(request, SpoolQuery)
    items = await setaside.list_spool(request.app[HUB_KEY].db, state=params.state,
                                      limit=params.limit)
    return _json(SpoolList(items=[SpoolItemOut.model_validate(i, from_attributes=True)
                                  for i in items]))


async def get_spool(request: web.Request) -> web.Response:
    item = await setaside.show_spool(request.app[HUB_KEY].db, _id(request))
    return _json(SpoolDetailOut.model_validate(item, from_attributes=True))


async def retry_spool(request: web.Request) -> web.Response:
    await read_body(request, RetryIn)
    hub = request.app[HUB_KEY]
    retried = await setaside.retry_spool(hub.db, _id(request), actor=caller(request).email)
    if hub.spool.on_new is not None:
        hub.spool.on_new()  # this process's spool worker takes it now, not at its next poll
    return _json(RetriedOut.model_validate(retried, from_attributes=True))


async def retry_outbox(request: web.Request) -> web.Response:
    await read_body(request, RetryIn)
    hub = request.app[HUB_KEY]
    retried = await setaside.retry_outbox(hub.db, _id(request), actor=caller(request).email)
    # Sent right away rather than at the sweeper's next pass (with Redis: by a worker); the
    # claim in hub.workers.delivery makes the sweeper's own job for it harmless.
    hub.jobs.submit_delivery([retried.id])
    return _json(RetriedOut.model_validate(replace(retried, enqueued=True),
                                           from_attributes=True))


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])


# -- the table --------------------------------------------------------------------------------

CONV = f"{API}/conversations/{{id}}"
# The multipart form of a reply with files (the JSON body's fields, as form fields).
REPLY_FORM: dict[str, Any] = {
    "type": "object", "required": ["body"],
    "properties": {
        "body": {"type": "string", "minLength": 1},
        "channel": {"type": "string", "enum": ["email", "sms", "telegram", "webchat",
                                               "webform"]},
        "after_message_id": {"type": "integer", "minimum": 0},
        FILE_FIELD: {"type": "array", "maxItems": MAX_REPLY_FILES,
                     "items": {"type": "string", "format": "binary"},
                     "description": "Files to send: " + ", ".join(sorted(REPLY_TYPES)) + "."},
    },
}

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
          status=202, body=ReplyIn, form=REPLY_FORM,
          description="Queued for delivery; the message's delivery_status follows it. Goes out "
                      "on the conversation's channel unless `channel` names another. 422 when "
                      "the channel is not configured (`no_channel`), the contact has no address "
                      "on it (`no_address`) or opted out (`opted_out`), or the text is too long "
                      "for it (`too_long`); 409 `conflict` when `after_message_id` is older "
                      "than the conversation's newest message.\n\nWith files: "
                      "`multipart/form-data` with the same fields and up to "
                      f"{MAX_REPLY_FILES} files `{FILE_FIELD}`, each at most `[hub] "
                      "max_reply_attachment_bytes` and, by its content, a PDF or an image (PNG, "
                      "JPEG, GIF, WebP). Email, Telegram and the web chat carry files; SMS does "
                      "not. 422 `attachment_too_large`, `attachment_type`, "
                      "`too_many_attachments`, or `attachments_not_supported` (the channel "
                      "cannot carry files); nothing is stored or queued then. The sent files "
                      "are listed in the message's `attachments`."),
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
    Route("POST", f"{CONV}/not-spam", post_not_spam, "Not spam: route it again as if new",
          ConversationItem, body=ClaimIn, roles=SUPERVISORS,
          errors=(400, 401, 404, 409, 422, 429),
          description="For a conversation marked spam: the rules route it again as if its first "
                      "message had just arrived (queue, tags, timers, the acknowledgment). 409 "
                      "when it is not marked spam. List spam with `GET "
                      "/api/v1/conversations?spam=true`."),
    Route("GET", f"{API}/contacts/{{id}}", get_contact,
          "A contact with every identity and the conversations the caller may see",
          ContactDetail,
          description="Agents get 404 for a contact with no conversation in their queues."),
    Route("POST", f"{API}/contacts/{{id}}/merge", merge_contact,
          "Merge another contact into this one", ContactDetail, body=MergeIn,
          roles=SUPERVISORS,
          description="The other contact's identities and conversations move to this one, "
                      "which takes its name or language when it has none; the other is "
                      "deleted. 404 when either does not exist, 422 for the same contact."),
    Route("GET", f"{API}/attachments/{{id}}", get_attachment, "Download an attachment",
          media_type="application/octet-stream",
          description="Served as a download (Content-Disposition: attachment, nosniff)."),
    Route("GET", f"{API}/staff", list_staff, "Staff accounts", StaffList, roles=ADMINS),
    Route("POST", f"{API}/staff", create_staff, "Add a staff account", StaffOut, status=201,
          body=StaffIn, roles=ADMINS, errors=(400, 401, 409, 422, 429)),
    Route("GET", f"{API}/canned", list_canned, "Canned responses the caller may use",
          CannedList, query=CannedQuery),
    Route("POST", f"{API}/canned", create_canned, "Add a canned response", CannedOut,
          status=201, body=CannedIn, roles=SUPERVISORS, errors=(400, 401, 409, 422, 429),
          description="422 when the text names a placeholder that does not exist; 409 when "
                      "the name is taken in that scope."),
    Route("DELETE", f"{API}/canned/{{id}}", delete_canned, "Remove a canned response",
          status=204, roles=SUPERVISORS),
    Route("GET", f"{CONV}/canned/{{canned_id}}", render_canned,
          "A canned response filled in for this conversation", RenderedOut),
    Route("GET", f"{API}/rules", rules_status, "The live rule set and the latest refused change",
          RulesStatus, roles=SUPERVISORS, errors=(401, 429),
          description="What `hub rules check` would say of the folder now, the live set's "
                      "hash and since when, and the latest change that was refused (the set "
                      "before it stayed live) with its `path:line` errors."),
    Route("GET", f"{API}/outbox", list_outbox, "Outbox items by state (default: dead letter)",
          OutboxList, query=OutboxQuery, roles=SUPERVISORS,
          description="`state=dead` lists deliveries that failed for good, with last_error."),
    Route("POST", f"{API}/outbox/{{id}}/retry", retry_outbox,
          "Send a dead outbox item again", RetriedOut, body=RetryIn, roles=SUPERVISORS,
          errors=(400, 401, 404, 409, 422, 429),
          description="Sets a `dead` item back to `pending`, due now, and hands it to a "
                      "delivery job at once; audit-logged with the caller as actor. 409 "
                      "(`not_retryable`) when the item is not dead."),
    Route("GET", f"{API}/spool", list_spool, "Inbound spool items (default: set aside)",
          SpoolList, query=SpoolQuery, roles=SUPERVISORS,
          description="Newest first. `state=failed` (the default) lists what the spool worker "
                      "set aside after its last try, with last_error."),
    Route("GET", f"{API}/spool/{{id}}", get_spool, "One spool item", SpoolDetailOut,
          roles=SUPERVISORS,
          description="With its envelope and the payload's first bytes as text, control and "
                      "format characters escaped."),
    Route("POST", f"{API}/spool/{{id}}/retry", retry_spool, "Work a failed spool item again",
          RetriedOut, body=RetryIn, roles=SUPERVISORS, errors=(400, 401, 404, 409, 422, 429),
          description="Sets a `failed` item back to `pending` with its tries reset; the spool "
                      "worker takes it. Audit-logged with the caller as actor. 409 "
                      "(`not_retryable`) when the item is not failed."),
    Route("GET", f"{API}/stats", get_stats, "Service figures per queue, month and channel",
          StatsOut, query=StatsParams, roles=SUPERVISORS, errors=(400, 401, 403, 422, 429),
          description="Conversations created from `from` to `to` (UTC days, both included): "
                      "received, resolved, first response (median, p90) and resolution "
                      "(median) times in seconds, answered surveys and their mean rating; "
                      "`totals` sums the channels."),
    Route("GET", f"{API}/stats.csv", get_stats_csv, "The service figures as CSV",
          query=StatsParams, roles=SUPERVISORS, media_type="text/csv",
          errors=(400, 401, 403, 422, 429),
          description="The lines of `GET /api/v1/stats` (`items`, then `totals` with channel "
                      "`all`), one header line."),
    Route("GET", f"{API}/events", events_socket, "Live events (WebSocket)", status=101,
          errors=(401, 426, 429),
          description="Upgrade to a WebSocket; each text frame is one event "
                      "`{\"kind\", \"conversation_id\", \"queue\", ...}` of a queue the caller "
                      "may see. With `[redis] url`, events of every hub process arrive."),
)


# Handlers that only read and answer: their reads share the session of the token's look-up.
ONE_SESSION: frozenset[Handler] = frozenset({list_queues, list_conversations, get_conversation,
                                             get_contact, list_canned, render_canned})


def setup_api(app: web.Application) -> None:
    hub = app[HUB_KEY]
    install(app, hub.settings.security.api_rate_per_minute)
    app[OPENAPI_KEY] = document(ROUTES)
    for route in ROUTES:
        handler = (route.handler if route.public
                   else guarded(_refusals(route.handler), route.roles,
                                reads=route.handler in ONE_SESSION))
        app.router.add_route(route.method, route.aiohttp_path, handler)

