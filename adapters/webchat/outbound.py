"""Staff replies to a chat visitor, and where a reply goes when the visitor has left.

`send` (in the delivery job, in whichever process runs it) publishes a `webchat.message` event
on the hub's bus; with `[redis] url` the bus carries it to every `hub serve`, and the one that
holds the visitor's connection pushes the `message` frame (adapters/webchat/live.py). A visitor
who is not connected reads it on their next `hello`: the message is in the conversation either
way, so the send succeeds ("sent"); the widget's `seen` later makes it "delivered". The provider
id recorded for the send is `<visitor>:<message id>`, so a `seen` can only speak for messages
sent to the visitor who says it.

A visitor gone for `away_after_seconds` (or who left a message from the offline form) gets
replies by email or SMS instead when they gave an address (`channels_instead`, registered with
hub.outbound).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.adapters.base import EventPublisher
from hub.config import Settings
from hub.events import Event
from hub.model import Direction, OutboundMessage, SendResult
from hub.storage.tables import Conversation, Message

from .live import WEBCHAT_MESSAGE
from .normalize import CHANNEL, LEAVE_MESSAGE_META
from .presence import VisitorPresence


def delivery_key(visitor: str, message_id: int) -> str:
    return f"{visitor}:{message_id}"


async def publish_reply(events: EventPublisher | None, msg: OutboundMessage) -> SendResult:
    if events is not None:
        events.publish(Event(WEBCHAT_MESSAGE, msg.conversation_id, None,
                             {"visitor": msg.to, "message_id": msg.message_id}))
    return SendResult(provider_id=delivery_key(msg.to, msg.message_id))


def fallback_channels(settings: Settings) -> tuple[str, ...]:
    """The channels a reply may take instead, in order: those this hub has configured."""
    configured = {"email": settings.smtp.enabled,
                  "sms": bool(settings.twilio.account_sid
                              and settings.twilio.auth_token.get_secret_value())}
    return tuple(channel for channel, on in configured.items() if on)


class AwayCheck:
    """hub.outbound's GONE_CHECKS entry for the chat."""

    def __init__(self, presence: VisitorPresence, fallbacks: tuple[str, ...]) -> None:
        self.presence = presence
        self.fallbacks = fallbacks

    async def __call__(self, session: AsyncSession, conversation: Conversation,
                       visitor: str) -> tuple[str, ...]:
        if not self.fallbacks:
            return ()
        if await _left_a_message(session, conversation.id):
            return self.fallbacks
        return () if await self.presence.is_here(visitor) else self.fallbacks


async def _left_a_message(session: AsyncSession, conversation_id: int) -> bool:
    """Whether the visitor's latest chat message came from the leave-a-message form."""
    meta = await session.scalar(
        select(Message.meta).where(Message.conversation_id == conversation_id,
                                   Message.direction == Direction.INBOUND.value,
                                   Message.channel == CHANNEL)
        .order_by(Message.id.desc()).limit(1))
    return bool((meta or {}).get(LEAVE_MESSAGE_META))
