"""Rows turned into the API's response models: conversations (list items and detail, with
contacts, assignees, messages, attachments and routing loaded in a few queries) and queue counts.

What a caller may see is decided in hub.service; this module only presents what it was given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.storage.tables import (
    Attachment,
    Contact,
    Conversation,
    Identity,
    Message,
    RoutingDecisionRow,
    Staff,
)
from hub.web.schemas import (
    AttachmentOut,
    ContactDetail,
    ContactRef,
    ConversationDetail,
    ConversationItem,
    DroppedOut,
    IdentityOut,
    MessageOut,
    RoutingOut,
)

API = "/api/v1"


async def _identities(session: AsyncSession,
                      contact_ids: Iterable[int]) -> dict[int, list[IdentityOut]]:
    found: dict[int, list[IdentityOut]] = defaultdict(list)
    rows = await session.scalars(select(Identity).where(Identity.contact_id.in_(set(contact_ids)))
                                 .order_by(Identity.id))
    for row in rows:
        found[row.contact_id].append(IdentityOut(channel=row.channel, address=row.address))
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


def _item(conversation: Conversation, contact: Contact, identities: list[IdentityOut],
          emails: dict[int, str]) -> ConversationItem:
    return ConversationItem(
        id=conversation.id, reference=conversation.reference, queue=conversation.queue,
        status=conversation.status, priority=conversation.priority,
        channel=conversation.channel, subject=conversation.subject,
        tags=list(conversation.tags or []),
        contact=ContactRef(id=contact.id, name=contact.name, identities=identities),
        assignee=emails.get(conversation.assignee_id) if conversation.assignee_id else None,
        created_at=conversation.created_at, last_message_at=conversation.last_message_at,
        resolved_at=conversation.resolved_at, spam=conversation.spam,
    )


async def contact_detail(session: AsyncSession, contact: Contact,
                         conversations: Sequence[Conversation]) -> ContactDetail:
    identities = await _identities(session, [contact.id])
    return ContactDetail(id=contact.id, name=contact.name, language=contact.language,
                         created_at=contact.created_at, identities=identities[contact.id],
                         conversations=await conversation_items(session, conversations))


async def conversation_detail(session: AsyncSession,
                              conversation: Conversation) -> ConversationDetail:
    [item] = await conversation_items(session, [conversation])
    return ConversationDetail(**dict(item), messages=await _messages(session, conversation.id),
                              routing=await _routing(session, conversation.id))


async def _messages(session: AsyncSession, conversation_id: int) -> list[MessageOut]:
    messages = list(await session.scalars(
        select(Message).where(Message.conversation_id == conversation_id)
        .order_by(Message.created_at, Message.id)))
    files: dict[int, list[AttachmentOut]] = defaultdict(list)
    if messages:
        rows = await session.scalars(select(Attachment).where(
            Attachment.message_id.in_([m.id for m in messages])).order_by(Attachment.id))
        for row in rows:
            files[row.message_id].append(AttachmentOut(
                id=row.id, filename=row.filename, content_type=row.content_type, size=row.size,
                url=f"{API}/attachments/{row.id}"))
    emails = await _emails(session, (m.staff_id for m in messages))
    return [_message(m, files[m.id], emails) for m in messages]


def _message(message: Message, files: list[AttachmentOut], emails: dict[int, str]) -> MessageOut:
    direction: Any = message.direction
    return MessageOut(
        id=message.id, direction=direction, channel=message.channel, body=message.body,
        created_at=message.created_at, delivery_status=message.delivery_status,
        delivery_error=message.delivery_error if message.direction == "outbound" else None,
        author=emails.get(message.staff_id) if message.staff_id else None,
        automatic=message.automatic, attachments=files, flags=list(message.flags or []),
        dropped_attachments=[DroppedOut(**d) for d in (message.meta or {}).get(
            "dropped_attachments", []) if isinstance(d, dict)],
    )


async def _routing(session: AsyncSession, conversation_id: int) -> RoutingOut:
    row = await session.scalar(
        select(RoutingDecisionRow).where(RoutingDecisionRow.conversation_id == conversation_id)
        .order_by(RoutingDecisionRow.id.desc()).limit(1))
    if row is None:
        return RoutingOut(rules_version=None, trace=[])
    return RoutingOut(rules_version=row.rules_version, trace=list(row.trace or []),
                      decision=dict(row.decision or {}))


async def open_counts(session: AsyncSession) -> dict[tuple[str | None, str], int]:
    rows = await session.execute(
        select(Conversation.queue, Conversation.status, func.count())
        .where(Conversation.status.in_(["open", "pending"]))
        .group_by(Conversation.queue, Conversation.status))
    return {(queue, status): int(n) for queue, status, n in rows}
