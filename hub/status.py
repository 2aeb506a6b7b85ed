"""Delivery status of outbound messages: every report is kept, the message moves forward only.

Reports come from delivery jobs (sent), from inbound mail (bounces, via the intake, in the
same transaction as the bounce message) and from providers' status callbacks (the
`StatusReporter` that adapters get as their status sink).

Providers report out of order (a "sent" callback after "delivered"); a terminal failure after
delivery is kept as an event but does not turn a delivered message into a failed one.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, case, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.adapters.base import Unavailable
from hub.events import Event, EventBus
from hub.model import DeliveryReport, DeliveryStatus
from hub.storage.db import Database
from hub.storage.errors import is_transient
from hub.storage.tables import Conversation, DeliveryEvent, Message

RANK = {
    DeliveryStatus.QUEUED.value: 0,
    DeliveryStatus.SENDING.value: 1,
    DeliveryStatus.SENT.value: 2,
    DeliveryStatus.FAILED.value: 3,
    DeliveryStatus.UNDELIVERED.value: 3,
    DeliveryStatus.BOUNCED.value: 3,
    DeliveryStatus.DELIVERED.value: 4,
    DeliveryStatus.READ.value: 5,
}


def moves_forward(current: str | None, new: str) -> bool:
    return RANK.get(new, -1) > RANK.get(current or "", -1)


def rank_sql(status: ColumnElement[str | None]) -> ColumnElement[int]:
    """RANK in SQL, for statements that advance many messages at once (delivery results):
    `rank_sql(Message.delivery_status) < RANK[new]` is `moves_forward` on the stored value."""
    return case(RANK, value=status, else_=-1)


async def record_status(session: AsyncSession, message: Message, status: str, *,
                        provider_id: str | None = None, detail: str | None = None) -> bool:
    """Store the report; advance the message if the status is further along. True if advanced."""
    session.add(DeliveryEvent(message_id=message.id, status=status,
                              provider_id=provider_id, detail=detail))
    if not moves_forward(message.delivery_status, status):
        return False
    message.delivery_status = status
    if status in (DeliveryStatus.FAILED.value, DeliveryStatus.BOUNCED.value,
                  DeliveryStatus.UNDELIVERED.value):
        message.delivery_error = detail
    return True


async def find_outbound(session: AsyncSession, channel: str,
                        refers_to: Sequence[str]) -> Message | None:
    """Our outbound message a report is about, by the provider id or thread key we recorded."""
    keys = [key for key in refers_to if key][:20]
    if not keys:
        return None
    return await session.scalar(
        select(Message).where(Message.channel == channel, Message.direction == "outbound",
                              Message.provider_id.in_(keys) | Message.thread_key.in_(keys))
        .order_by(Message.id.desc()).limit(1))


async def apply_report(session: AsyncSession, channel: str,
                       report: DeliveryReport) -> Message | None:
    """Record the report on the message it is about (forward-only); None if not ours."""
    original = await find_outbound(session, channel, report.refers_to)
    if original is None:
        return None
    # A status outside the ranks ("delayed") is kept as an event; the message does not move.
    await record_status(session, original, report.status, detail=report.detail)
    return original


class StatusReporter:
    """The status sink adapters report to (webhook status callbacks): one transaction each,
    then an event for live views."""

    def __init__(self, db: Database, events: EventBus) -> None:
        self.db = db
        self.events = events

    async def report(self, channel: str, report: DeliveryReport) -> bool:
        try:
            async with self.db.transaction() as session:
                original = await apply_report(session, channel, report)
                if original is None:
                    return False
                queue = await session.scalar(select(Conversation.queue).where(
                    Conversation.id == original.conversation_id))
                event = Event("delivery.status", original.conversation_id, queue,
                              {"message_id": original.id, "status": original.delivery_status})
        except Exception as exc:
            if is_transient(exc):
                raise Unavailable(type(exc).__name__) from exc
            raise
        self.events.publish(event)
        return True
