"""Staff notifications from rule `notify = { email = ... }` actions: an internal email through
the outbox, a `staff.notify` event for the addressed staff member's workspace, and the queues a
staff member muted (table `queue_mutes`).

The email is a message of direction "note" (never shown on the citizen's pages, which list only
inbound and outbound messages) with its own outbox row, addressed to the rule's address only:
the delivery sends it without the conversation's reply token, reference or threading headers
(workers/delivery.py), so an answer from staff cannot land in the citizen's conversation.
A staff member who muted the conversation's queue gets neither the email nor the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.events import Event
from hub.model import DeliveryStatus, Direction, utcnow
from hub.outbound import add_outbox_row
from hub.routing import Notify
from hub.storage.ids import ids
from hub.storage.tables import Conversation, Message, QueueMute, Staff

PENDING_EVENTS = "hub.staff_notify.events"  # session.info key: events to publish after commit
KIND = "staff_notify"  # Message.meta["kind"] of the internal email
# No reference in the subject: an answer quoting it would be threaded into the citizen's
# conversation (adapters/email/normalize.py reads references from subjects, not bodies).
SUBJECT = "Staff notification from the message hub"
BODY = "{text}\n\nConversation {reference}: /staff/conversations/{id}"
SHOWN_DAYS = 7  # the workspace lists notifications this recent
SHOWN = 10


async def _staff_by_email(session: AsyncSession, email: str) -> Staff | None:
    return await session.scalar(select(Staff).where(
        func.lower(Staff.email) == email.lower(), Staff.active.is_(True)))


async def is_muted(session: AsyncSession, staff_id: int, queue: str | None) -> bool:
    if queue is None:
        return False
    return await session.get(QueueMute, (staff_id, queue)) is not None


async def muted_queues(session: AsyncSession, staff_id: int) -> set[str]:
    return set(await session.scalars(select(QueueMute.queue).where(
        QueueMute.staff_id == staff_id)))


async def set_muted(session: AsyncSession, staff_id: int, queue: str, muted: bool) -> None:
    await session.execute(delete(QueueMute).where(QueueMute.staff_id == staff_id,
                                                  QueueMute.queue == queue))
    if muted:
        session.add(QueueMute(staff_id=staff_id, queue=queue, created_at=utcnow()))


async def _queue_email(session: AsyncSession, conversation: Conversation, to: str,
                       text: str) -> tuple[int, int]:
    """The internal message and its outbox row; (message id, outbox id)."""
    allocate = ids(session)
    message = Message(
        id=await allocate.next("messages"), conversation_id=conversation.id,
        direction=Direction.NOTE.value, channel="email", recipient=to,
        subject=SUBJECT, body=BODY.format(text=text, reference=conversation.reference,
                                          id=conversation.id), automatic=True,
        delivery_status=DeliveryStatus.QUEUED.value, flags=[], meta={"kind": KIND},
        created_at=utcnow())
    session.add(message)
    return message.id, await add_outbox_row(session, message)


async def notify_staff(session: AsyncSession, conversation: Conversation,
                       notes: Iterable[Notify]) -> tuple[list[int], list[Event]]:
    """Queue the email of each `email` notification (in the caller's transaction) and make the
    events to publish after its commit; returns (outbox ids, events)."""
    outbox_ids: list[int] = []
    events: list[Event] = []
    for note in notes:
        if note.kind != "email" or not note.target:
            continue  # webhooks: no channel for them yet, the audit entry is the record
        staff = await _staff_by_email(session, note.target)
        if staff is not None and await is_muted(session, staff.id, conversation.queue):
            continue
        message_id, outbox_id = await _queue_email(session, conversation, note.target,
                                                   note.text)
        outbox_ids.append(outbox_id)
        if staff is not None:
            events.append(Event("staff.notify", conversation.id, conversation.queue, {
                "staff_id": staff.id, "message_id": message_id,
                "reference": conversation.reference}))
    return outbox_ids, events


@dataclass(frozen=True, slots=True)
class Shown:
    conversation_id: int
    reference: str
    queue: str | None
    text: str
    at: datetime


async def recent_for(session: AsyncSession, staff: Staff,
                     now: datetime | None = None) -> Sequence[Shown]:
    """The staff member's recent notifications, newest first, muted queues left out."""
    since = (now or utcnow()) - timedelta(days=SHOWN_DAYS)
    muted = select(QueueMute.queue).where(QueueMute.staff_id == staff.id)
    rows = await session.execute(
        select(Conversation.id, Conversation.reference, Conversation.queue, Message.body,
               Message.created_at)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.direction == Direction.NOTE.value,
               func.lower(Message.recipient) == staff.email.lower(),
               Message.created_at >= since,
               or_(Conversation.queue.is_(None), Conversation.queue.not_in(muted)))
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(SHOWN))
    return [Shown(*row) for row in rows]
