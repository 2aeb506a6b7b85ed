"""Rows turned into the API's response models: conversations (list items and detail, with
contacts, assignees, messages, attachments and routing loaded in a few queries) and queue counts.

What a caller may see is decided in hub.service; this module only presents what it was given.
The list and the detail, the staff's hot paths, read plain rows (no entities), build plain
dicts and have pydantic validate the whole answer in one call; their statements are built once.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.storage.idset import among, id_list
from hub.storage.tables import (
    Attachment,
    Contact,
    Conversation,
    Identity,
    Message,
    RoutingDecisionRow,
    Staff,
    Survey,
)
from hub.web.schemas import (
    ContactDetail,
    ContactRef,
    ConversationDetail,
    ConversationItem,
    ConversationList,
    IdentityOut,
)

API = "/api/v1"


Json = dict[str, Any]


@functools.cache
def _identities_query(dialect: str) -> Select[int, str, str]:
    return (select(Identity.contact_id, Identity.channel, Identity.address)
            .where(among(Identity.contact_id, dialect)).order_by(Identity.id))


async def _identities(session: AsyncSession, contact_ids: Iterable[int]) -> dict[int, list[Json]]:
    """Each contact's identities as IdentityOut fields, in one query."""
    found: dict[int, list[Json]] = defaultdict(list)
    dialect = session.get_bind().dialect.name
    rows = await session.execute(_identities_query(dialect),
                                 {"ids": id_list(contact_ids, dialect)})
    for contact_id, channel, address in rows:
        found[contact_id].append({"channel": channel, "address": address})
    return found


async def _emails(session: AsyncSession, staff_ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in staff_ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(Staff.id, Staff.email).where(Staff.id.in_(wanted)))
    return {row.id: row.email for row in rows}


async def conversation_items(session: AsyncSession,
                             conversations: Sequence[Conversation]) -> list[ConversationItem]:
    """Page of conversations -> items, with contacts and assignees loaded in three queries."""
    contact_ids = {c.contact_id for c in conversations}
    contacts = {c.id: c for c in await session.scalars(
        select(Contact).where(Contact.id.in_(contact_ids)))} if contact_ids else {}
    identities = await _identities(session, contact_ids)
    emails = await _emails(session, (c.assignee_id for c in conversations))
    return [_item(c, contacts[c.contact_id], identities[c.contact_id], emails)
            for c in conversations]


def _item(conversation: Conversation, contact: Contact, identities: list[Json],
          emails: dict[int, str]) -> ConversationItem:
    return ConversationItem(
        id=conversation.id, reference=conversation.reference, queue=conversation.queue,
        status=conversation.status, priority=conversation.priority,
        channel=conversation.channel, subject=conversation.subject,
        tags=list(conversation.tags or []),
        contact=ContactRef(id=contact.id, name=contact.name,
                           identities=[IdentityOut(**i) for i in identities]),
        assignee=emails.get(conversation.assignee_id) if conversation.assignee_id else None,
        created_at=conversation.created_at, last_message_at=conversation.last_message_at,
        resolved_at=conversation.resolved_at, spam=conversation.spam,
    )


async def conversation_list(session: AsyncSession, rows: Sequence[Row[Any]],
                            next_cursor: str | None) -> ConversationList:
    """A page of rows of hub.service.ITEM_COLUMNS -> the list, with one more query."""
    items = await _row_items(session, rows)
    return ConversationList.model_validate({"items": items, "next_cursor": next_cursor})


async def _row_items(session: AsyncSession, rows: Sequence[Row[Any]]) -> list[Json]:
    identities = await _identities(session, {row.contact_id for row in rows}) if rows else {}
    return [_row_item(row, identities.get(row.contact_id, [])) for row in rows]


def _row_item(row: Row[Any], identities: list[Json]) -> Json:
    return {
        "id": row.id, "reference": row.reference, "queue": row.queue, "status": row.status,
        "priority": row.priority, "channel": row.channel, "subject": row.subject,
        "tags": list(row.tags or []),
        "contact": {"id": row.contact_id, "name": row.contact_name, "identities": identities},
        "assignee": row.assignee_email, "created_at": row.created_at,
        "last_message_at": row.last_message_at, "resolved_at": row.resolved_at,
        "spam": row.spam,
    }


async def contact_detail(session: AsyncSession, contact: Contact,
                         conversations: Sequence[Conversation]) -> ContactDetail:
    identities = await _identities(session, [contact.id])
    return ContactDetail(id=contact.id, name=contact.name, language=contact.language,
                         created_at=contact.created_at,
                         identities=[IdentityOut(**i) for i in identities[contact.id]],
                         conversations=await conversation_items(session, conversations))


async def conversation_detail(session: AsyncSession, row: Row[Any]) -> ConversationDetail:
    """A row of hub.service.ITEM_COLUMNS -> the conversation with its messages and routing."""
    [item] = await _row_items(session, [row])
    return ConversationDetail.model_validate({
        **item, "messages": await _messages(session, row.id),
        "routing": await _routing(session, row.id),
        "satisfaction": await _satisfaction(session, row.id)})


# What a detail shows of each message (not the deferred full_text, html and raw), with the
# author's email and the attachments in the same query: one row per attachment, or one with
# none.
_MESSAGES = (
    select(Message.id, Message.direction, Message.channel, Message.body, Message.created_at,
           Message.delivery_status, Message.delivery_error, Message.automatic, Message.flags,
           Message.meta, Staff.email.label("author"), Attachment.id.label("attachment_id"),
           Attachment.filename, Attachment.content_type, Attachment.size)
    .outerjoin(Staff, Staff.id == Message.staff_id)
    .outerjoin(Attachment, Attachment.message_id == Message.id)
    .where(Message.conversation_id == bindparam("conversation_id"))
    .order_by(Message.created_at, Message.id, Attachment.id))


async def _messages(session: AsyncSession, conversation_id: int) -> list[Json]:
    messages: dict[int, Json] = {}
    for row in await session.execute(_MESSAGES, {"conversation_id": conversation_id}):
        message = messages.get(row.id)
        if message is None:
            message = messages[row.id] = _message(row)
        if row.attachment_id is not None:
            message["attachments"].append({
                "id": row.attachment_id, "filename": row.filename,
                "content_type": row.content_type, "size": row.size,
                "url": f"{API}/attachments/{row.attachment_id}"})
    return list(messages.values())


def _message(row: Row[Any]) -> Json:
    return {
        "id": row.id, "direction": row.direction, "channel": row.channel, "body": row.body,
        "created_at": row.created_at, "delivery_status": row.delivery_status,
        "delivery_error": row.delivery_error if row.direction == "outbound" else None,
        "author": row.author, "automatic": row.automatic, "attachments": [],
        "flags": list(row.flags or []),
        "dropped_attachments": [d for d in (row.meta or {}).get("dropped_attachments", [])
                                if isinstance(d, dict)],
    }


_ROUTING = (select(RoutingDecisionRow.rules_version, RoutingDecisionRow.trace,
                   RoutingDecisionRow.decision)
            .where(RoutingDecisionRow.conversation_id == bindparam("conversation_id"))
            .order_by(RoutingDecisionRow.id.desc()).limit(1))


async def _routing(session: AsyncSession, conversation_id: int) -> Json:
    row = (await session.execute(_ROUTING, {"conversation_id": conversation_id})).first()
    if row is None:
        return {"rules_version": None, "trace": []}
    return {"rules_version": row.rules_version, "trace": list(row.trace or []),
            "decision": dict(row.decision or {})}


_SATISFACTION = (select(Survey.rating, Survey.comment, Survey.answered_at)
                 .where(Survey.conversation_id == bindparam("conversation_id"),
                        Survey.answered_at.is_not(None)))


async def _satisfaction(session: AsyncSession, conversation_id: int) -> Json | None:
    row = (await session.execute(_SATISFACTION, {"conversation_id": conversation_id})).first()
    if row is None:
        return None
    return {"rating": row.rating, "comment": row.comment, "answered_at": row.answered_at}


async def open_counts(session: AsyncSession) -> dict[tuple[str | None, str], int]:
    rows = await session.execute(
        select(Conversation.queue, Conversation.status, func.count())
        .where(Conversation.status.in_(["open", "pending"]))
        .group_by(Conversation.queue, Conversation.status))
    return {(queue, status): int(n) for queue, status, n in rows}
