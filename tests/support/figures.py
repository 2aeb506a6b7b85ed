"""Conversations with chosen times, replies, resolutions and survey answers, written straight
to the tables, so that service figures (hub.stats) can be checked against known values."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.app import Hub
from hub.storage.ids import ids
from hub.storage.tables import Contact, Conversation, Queue, Survey

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Seed:
    created: datetime
    queue: str | None = "roads"
    channel: str = "email"
    first_response: timedelta | None = None  # after creation
    resolved: timedelta | None = None
    rating: int | None = None
    comment: str | None = None
    spam: bool = False
    status: str = "open"
    language: str | None = None


async def add_queues(hub: Hub, **titles: str) -> None:
    async with hub.db.transaction() as session:
        session.add_all([Queue(name=name, title=title) for name, title in titles.items()])


async def seed(hub: Hub, seeds: list[Seed]) -> list[int]:
    """The conversations' ids, in the order given; each has a contact of its own (named
    "Citizen <n>", n counting from 0 in this call)."""
    made: list[int] = []
    async with hub.db.transaction() as session:
        allocate = ids(session)
        for number, s in enumerate(seeds):
            contact = Contact(id=await allocate.next("contacts"), name=f"Citizen {number}",
                              language=s.language, created_at=s.created)
            session.add(contact)
            resolved_at = s.created + s.resolved if s.resolved is not None else None
            status = "resolved" if resolved_at is not None and s.status == "open" else s.status
            conversation_id = await allocate.next("conversations")
            conversation = Conversation(
                id=conversation_id, reference=f"SEED{conversation_id:06d}",
                contact_id=contact.id, channel=s.channel, queue=s.queue, status=status,
                priority="normal", tags=[], spam=s.spam, auto_replies_sent=0,
                acknowledged=False, created_at=s.created, updated_at=s.created,
                last_message_at=s.created, last_inbound_at=s.created,
                first_response_at=(s.created + s.first_response
                                   if s.first_response is not None else None),
                resolved_at=resolved_at, language=s.language)
            session.add(conversation)
            await session.flush()
            if s.rating is not None:
                session.add(Survey(conversation_id=conversation.id, token=f"tok{conversation_id:020d}",
                                   channel=s.channel, sent_at=resolved_at or s.created,
                                   rating=s.rating, comment=s.comment,
                                   answered_at=resolved_at or s.created, answered_via="web"))
            made.append(conversation.id)
    return made
