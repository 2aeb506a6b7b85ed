"""Outbound messages: a reply (staff or automatic) becomes a message row and an outbox row in one
transaction; a delivery job sends it later (hub.workers.delivery)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import DeliveryStatus, Direction, OutboxState, utcnow
from hub.routing.timers import cancel_timers
from hub.storage.ids import ids
from hub.storage.rows import add_row, write_rows_now
from hub.storage.tables import Attachment, Conversation, Identity, Message, OutboxItem


class Queued(NamedTuple):
    message: Message
    outbox_id: int


class StoredFile(NamedTuple):
    """A file of an outbound message whose content is already in the blob store."""

    filename: str
    content_type: str
    size: int
    sha256: str


class NoAddressOnChannel(ValueError):
    """The contact has no identity on the channel the reply should go out on."""


class OptedOut(NoAddressOnChannel):
    """The citizen opted out on that channel (texted STOP, blocked the bot): nothing may be
    sent to that address until they opt back in."""

    code = "opted_out"


# Channels where a citizen can opt out (SMS STOP, a blocked Telegram bot): only there does
# queueing look the address up.
OPT_OUT_CHANNELS = frozenset({"sms", "telegram"})


async def is_opted_out(session: AsyncSession, channel: str, address: str) -> bool:
    if channel not in OPT_OUT_CHANNELS:
        return False
    return bool(await session.scalar(
        select(Identity.opted_out).where(Identity.channel == channel,
                                         Identity.address == address)))


# Channels with no way back of their own (a web form): what is sent goes to the address the
# citizen gave there, by email when they gave one, else by SMS.
ANSWERED_BY = {"webform": ("email", "sms")}


# Channels whose citizen can leave (a web chat visitor who closed the page): the channel's
# adapter registers a check `(session, conversation, address) -> the channels to answer on
# instead, in order` (empty while the citizen is there); a message for the conversation's own
# channel then goes out on the first of them the contact has an address on (the conversation
# continues there). The core imports no adapter for it.
GoneCheck = Callable[[AsyncSession, Conversation, str], Awaitable[tuple[str, ...]]]
GONE_CHECKS: dict[str, GoneCheck] = {}


def answered_on(channel: str, address: str) -> str:
    """The channel a message to `address` goes out on: its own, or for a channel with no way
    back (a web form) email or SMS by the address's shape."""
    if channel not in ANSWERED_BY:
        return channel
    return "email" if "@" in address else "sms"


async def reply_channel(session: AsyncSession, conversation: Conversation, channel: str | None,
                        recipient: str | None = None) -> tuple[str, str | None]:
    """The channel a message goes out on (default: the conversation's own) and, when that
    channel cannot carry it, the one that does with its address. A given `recipient` (the
    intake's: the sender of the form) decides by its shape."""
    own = conversation.channel
    if channel in (None, own) and recipient is None and own in GONE_CHECKS:
        # Named or not: the workspace's reply form always names the channel it preselects.
        return await _reachable(session, conversation, own)
    channel = channel or conversation.channel
    if channel not in ANSWERED_BY:
        return channel, recipient
    if recipient is not None:
        return answered_on(channel, recipient), recipient
    for other in ANSWERED_BY[channel]:
        try:
            return other, await recipient_for(session, conversation, other)
        except NoAddressOnChannel:
            continue
    raise NoAddressOnChannel(f"the citizen gave no address to answer a {channel} request on")


async def _reachable(session: AsyncSession, conversation: Conversation,
                     channel: str) -> tuple[str, str | None]:
    """The conversation's own channel while the citizen is there, else their email or phone."""
    address = await recipient_for(session, conversation, channel)
    for other in await GONE_CHECKS[channel](session, conversation, address):
        try:
            found = await recipient_for(session, conversation, other)
        except NoAddressOnChannel:
            continue
        if not await is_opted_out(session, other, found):
            return other, found
    return channel, address  # no other way: they read it when they come back


async def recipient_for(session: AsyncSession, conversation: Conversation, channel: str) -> str:
    """The address to write to: the one the citizen last wrote from on that channel."""
    last_sender = await session.scalar(
        select(Message.sender)
        .where(Message.conversation_id == conversation.id,
               Message.direction == Direction.INBOUND.value,
               Message.channel == channel)
        .order_by(Message.id.desc())
        .limit(1)
    )
    if last_sender:
        return last_sender
    address = await session.scalar(
        select(Identity.address)
        .where(Identity.contact_id == conversation.contact_id, Identity.channel == channel)
        .order_by(Identity.id.desc())
        .limit(1)
    )
    if address is None:
        raise NoAddressOnChannel(f"the contact has no {channel} address")
    return address


async def enqueue_outbound(
    session: AsyncSession,
    conversation: Conversation,
    body: str,
    *,
    subject: str | None = None,
    automatic: bool = False,
    staff_id: int | None = None,
    channel: str | None = None,
    recipient: str | None = None,
    attachments: Sequence[StoredFile] = (),
) -> Queued:
    """Create the outbound message and its outbox row in the caller's transaction (written at
    its next flush). `recipient` defaults to `recipient_for`: the intake knows it already.
    To an address that opted out it raises OptedOut (a NoAddressOnChannel: the callers of
    automatic messages, the acknowledgment and auto-replies, skip them)."""
    channel, recipient = await reply_channel(session, conversation, channel, recipient)
    recipient = recipient or await recipient_for(session, conversation, channel)
    if await is_opted_out(session, channel, recipient):
        raise OptedOut(f"the citizen opted out of {channel} messages")
    now = utcnow()
    values: dict[str, Any] = {
        "id": await ids(session).next("messages"), "conversation_id": conversation.id,
        "direction": Direction.OUTBOUND.value, "channel": channel, "recipient": recipient,
        "subject": subject, "body": body, "automatic": automatic, "staff_id": staff_id,
        "delivery_status": DeliveryStatus.QUEUED.value, "flags": [], "meta": {},
        "created_at": now,
    }
    message = Message(**values)
    if automatic and not attachments:
        # An acknowledgment or auto-reply, which its transaction does not read back: held
        # and written at the commit with the batch's others (hub.storage.rows), like the
        # inbound message it answers, instead of an ORM object flushed on its own.
        add_row(session, Message, **values)
    else:
        session.add(message)
    for stored in attachments:  # written with the message, in its transaction
        add_row(session, Attachment, message_id=message.id, filename=stored.filename,
                content_type=stored.content_type, size=stored.size, sha256=stored.sha256,
                inline=False)
    outbox_id = await add_outbox_row(session, message)
    conversation.last_message_at = now
    if automatic:
        conversation.auto_replies_sent = (conversation.auto_replies_sent or 0) + 1
    elif staff_id is not None:
        conversation.first_response_at = conversation.first_response_at or now
        await cancel_timers(session, conversation.id)
    return Queued(message, outbox_id)


async def add_outbox_row(session: AsyncSession, message: Message) -> int:
    """The outbox row that has the delivery send `message` (already added, id allocated)."""
    outbox_id = await ids(session).next("outbox")
    # Nothing reads it back before the commit: written then, with the batch's other outbox
    # rows in one statement, instead of an ORM object and a flush of its own.
    now = utcnow()
    add_row(session, OutboxItem, id=outbox_id, message_id=message.id, channel=message.channel,
            state=OutboxState.PENDING.value, attempts=0, next_attempt_at=message.created_at,
            locked_until=None, last_error=None, idempotency_key=secrets.token_hex(16),
            created_at=now, updated_at=now)
    return outbox_id


async def queue_outbound(session: AsyncSession, conversation: Conversation, body: str,
                         **options: Any) -> Message:
    """`enqueue_outbound`, for a caller that needs only the message."""
    return (await enqueue_outbound(session, conversation, body, **options)).message


async def outbox_id_for(session: AsyncSession, message_id: int) -> int:
    await write_rows_now(session)  # the outbox row may be held until the commit (add_outbox_row)
    outbox_id = await session.scalar(select(OutboxItem.id).where(OutboxItem.message_id == message_id))
    assert outbox_id is not None
    return outbox_id
