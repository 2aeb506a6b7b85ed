"""Delivery status of outbound messages: every report is kept, the message moves forward only.

Providers report out of order (a "sent" callback after "delivered"); a terminal failure after
delivery is kept as an event but does not turn a delivered message into a failed one.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import DeliveryStatus
from hub.storage.tables import DeliveryEvent, Message

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


async def find_outbound(session: AsyncSession, channel: str, provider_id: str) -> Message | None:
    return await session.scalar(
        select(Message).where(Message.channel == channel, Message.direction == "outbound",
                              (Message.provider_id == provider_id)
                              | (Message.thread_key == provider_id))
        .limit(1)
    )
