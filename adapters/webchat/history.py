"""The visitor's side of the database: their current conversation and its messages as `message`
frames, the `ack` of a stored message, and the capability links of attachments.

The chat is the one channel whose "provider" is the hub's own page, so showing the visitor
their conversation (as the tracking page does for a form) is this channel's job. What a visitor
sees: their own messages and what was sent to them (on any channel), never internal notes,
staff notifications or anything of another visitor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import Direction
from hub.storage.tables import Attachment, Conversation, Identity, Message, Staff

from .normalize import CHANNEL, CLIENT_ID_META
from .protocol import conversation_ref, frame, iso

FILES_PATH = "/chat/api/files"
HISTORY_LIMIT = 500  # messages in one welcome; a longer chat shows its latest ones
SHOWN = (Direction.INBOUND.value, Direction.OUTBOUND.value)


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    id: int
    reference: str
    status: str
    queue: str | None

    def as_frame(self) -> dict[str, str]:
        return conversation_ref(self.reference, self.status)


def _info(row: Conversation) -> ConversationInfo:
    return ConversationInfo(row.id, row.reference, row.status, row.queue)


async def current_conversation(session: AsyncSession, visitor: str) -> ConversationInfo | None:
    """The visitor's newest chat conversation (whatever its status: they see it closed)."""
    row = await session.scalar(
        select(Conversation)
        .join(Identity, Identity.contact_id == Conversation.contact_id)
        .where(Identity.channel == CHANNEL, Identity.address == visitor,
               Conversation.channel == CHANNEL)
        .order_by(Conversation.id.desc()).limit(1))
    return _info(row) if row is not None else None


async def conversation_info(session: AsyncSession, conversation_id: int) -> ConversationInfo | None:
    row = await session.get(Conversation, conversation_id)
    return _info(row) if row is not None else None


async def messages_after(session: AsyncSession, conversation_id: int, after: int | None,
                         secret: bytes) -> list[dict[str, Any]]:
    """`message` frames of the conversation with id > `after`, oldest first."""
    query = (select(Message).where(Message.conversation_id == conversation_id,
                                   Message.direction.in_(SHOWN))
             .order_by(Message.id.desc()).limit(HISTORY_LIMIT))
    if after is not None:
        query = query.where(Message.id > after)
    rows = list(await session.scalars(query))
    rows.reverse()
    return await frames(session, rows, secret)


async def message_for(session: AsyncSession, message_id: int, visitor: str,
                      secret: bytes) -> tuple[dict[str, Any], ConversationInfo] | None:
    """One message as its frame, if it belongs to a chat conversation of `visitor`."""
    row = await session.get(Message, message_id)
    if row is None or row.direction not in SHOWN:
        return None
    conversation = await session.get(Conversation, row.conversation_id)
    owner = await session.scalar(select(Identity.contact_id).where(
        Identity.channel == CHANNEL, Identity.address == visitor))
    if conversation is None or owner is None or conversation.contact_id != owner:
        return None
    return (await frames(session, [row], secret))[0], _info(conversation)


async def frames(session: AsyncSession, rows: Sequence[Message],
                 secret: bytes) -> list[dict[str, Any]]:
    ids = [row.id for row in rows]
    files: dict[int, list[dict[str, Any]]] = {}
    if ids:
        for attachment in await session.scalars(
                select(Attachment).where(Attachment.message_id.in_(ids),
                                         Attachment.inline.is_(False))
                .order_by(Attachment.id)):
            files.setdefault(attachment.message_id, []).append({
                "filename": attachment.filename, "content_type": attachment.content_type,
                "size": attachment.size, "url": file_url(attachment.id, secret)})
    staff_ids = {row.staff_id for row in rows if row.staff_id is not None}
    names: dict[int, str] = {}
    if staff_ids:
        found = await session.execute(select(Staff.id, Staff.name)
                                      .where(Staff.id.in_(staff_ids)))
        names = {staff_id: name for staff_id, name in found}
    return [_frame(row, files.get(row.id, []), names) for row in rows]


def _frame(row: Message, files: list[dict[str, Any]], names: dict[int, str]) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": row.id, "direction": row.direction, "body": row.body or "",
                              "created_at": iso(row.created_at), "attachments": files}
    if row.direction == Direction.OUTBOUND.value and row.staff_id in names:
        fields["author"] = names[row.staff_id]
    client_id = (row.meta or {}).get(CLIENT_ID_META)
    if row.direction == Direction.INBOUND.value and isinstance(client_id, str):
        fields["client_id"] = client_id
    return frame("message", **fields)


async def ack_fields(session: AsyncSession, message_id: int
                     ) -> tuple[dict[str, Any], ConversationInfo] | None:
    """What an `ack` of the stored message says (the same for every resend), and its
    conversation; one read."""
    found = (await session.execute(
        select(Message.created_at, Conversation.id, Conversation.reference,
               Conversation.status, Conversation.queue)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id == message_id))).first()
    if found is None:
        return None
    created_at, conversation_id, reference, status, queue = found
    conversation = ConversationInfo(conversation_id, reference, status, queue)
    return ({"id": message_id, "created_at": iso(created_at),
             "conversation": conversation.as_frame()}, conversation)


# -- attachment links -------------------------------------------------------------------------


def _file_signature(attachment_id: int, secret: bytes) -> str:
    digest = hmac.new(secret, f"webchat-file:{attachment_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def file_url(attachment_id: int, secret: bytes) -> str:
    """A link that shows the file to whoever holds it (an <img> cannot send the token)."""
    return f"{FILES_PATH}/{attachment_id}/{_file_signature(attachment_id, secret)}"


def file_signature_ok(attachment_id: int, signature: str, secret: bytes) -> bool:
    # Bytes: a str with non-ASCII characters (a percent-decoded path) would raise.
    return hmac.compare_digest(signature.encode(), _file_signature(attachment_id, secret).encode())
