"""What the hub stored, read back for assertions shared by the channel tests."""

from __future__ import annotations

from sqlalchemy import select

from hub.app import Hub
from hub.storage.tables import Attachment, Message


async def attachment_rows(hub: Hub) -> list[tuple[str, str, int, str]]:
    """(filename, content type, size, the message's provider id) of every attachment, in order."""
    async with hub.db.read() as session:
        found = (await session.execute(
            select(Attachment.filename, Attachment.content_type, Attachment.size,
                   Message.provider_id).join(Message, Message.id == Attachment.message_id)
            .order_by(Attachment.id))).all()
    return [(row[0], row[1], row[2], row[3] or "") for row in found]
