"""hub.storage.rows: rows held until the commit are written tables referred to first, whatever
order they were held in (foreign keys are checked row by row on both backends)."""

from __future__ import annotations

from sqlalchemy import func, select

from hub.model import utcnow
from hub.storage.db import Database
from hub.storage.ids import ids
from hub.storage.rows import add_row
from hub.storage.tables import Contact, Conversation, Message, OutboxItem


async def test_an_outbox_row_held_before_its_message_is_written_after_it(db_url: str) -> None:
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            now = utcnow()
            contact = Contact(id=await ids(session).next("contacts"), created_at=now)
            conversation = Conversation(
                id=await ids(session).next("conversations"), reference="REF-ROWS-1",
                contact_id=contact.id, channel="email", status="open", priority="normal",
                tags=[], spam=False, auto_replies_sent=0, acknowledged=False,
                created_at=now, updated_at=now, last_message_at=now)
            session.add_all([contact, conversation])
            message_id = await ids(session).next("messages")
            outbox_id = await ids(session).next("outbox")
            add_row(session, OutboxItem, id=outbox_id, message_id=message_id, channel="email",
                    state="pending", idempotency_key="rows-order-test")
            add_row(session, Message, id=message_id, conversation_id=conversation.id,
                    direction="outbound", channel="email", body="hello", automatic=True,
                    delivery_status="queued", flags=[], meta={}, created_at=now)
        async with db.read() as session:
            written = await session.scalar(select(func.count()).select_from(OutboxItem)
                                           .where(OutboxItem.message_id == message_id))
        assert written == 1
    finally:
        await db.dispose()
