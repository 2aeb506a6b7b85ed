"""deliver(outbox_id): claim the outbox item, send it through its channel's adapter, record the
outcome; transient failures retry with exponential backoff and jitter, permanent ones (or too many
tries) go to the dead letter where staff see them.

A job that runs twice does not send twice: the claim is a guarded UPDATE (only one worker moves an
item from pending to sending), and a sent item is never claimed again.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub import metrics
from hub.adapters.base import DeliveryError, PermanentError
from hub.config import OutboxSection
from hub.events import Event
from hub.model import (
    DeliveryStatus,
    OutboundAttachment,
    OutboundMessage,
    OutboxState,
    SendResult,
    utcnow,
)
from hub.status import record_status
from hub.storage.tables import Attachment, Conversation, Message, OutboxItem
from hub.tokens import make_reply_token

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)


def deliver(outbox_id: int) -> str:
    """The RQ job: runs the async delivery on the worker process's hub loop."""
    from hub.app import worker_hub

    hub = worker_hub()
    return hub.run_sync(deliver_async(hub, outbox_id))


def backoff_seconds(attempts: int, policy: OutboxSection) -> float:
    base = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2 ** max(attempts - 1, 0))
    return base * (1 + random.uniform(-policy.backoff_jitter, policy.backoff_jitter))


async def claim(session: AsyncSession, outbox_id: int, now: datetime,
                lease: timedelta) -> bool:
    result = await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == outbox_id,
               or_(and_(OutboxItem.state == OutboxState.PENDING.value,
                        OutboxItem.next_attempt_at <= now),
                   and_(OutboxItem.state == OutboxState.SENDING.value,
                        OutboxItem.locked_until < now)))
        .values(state=OutboxState.SENDING.value, attempts=OutboxItem.attempts + 1,
                locked_until=now + lease, updated_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def deliver_async(hub: Hub, outbox_id: int) -> str:
    """Returns what happened: "sent", "retry", "dead" or "skipped" (not ours to send now)."""
    now = utcnow()
    lease = timedelta(seconds=hub.settings.outbox.stale_after_seconds)
    async with hub.db.transaction() as session:
        if not await claim(session, outbox_id, now, lease):
            return "skipped"
        item = await session.get_one(OutboxItem, outbox_id)
        outbound = await _build(hub, session, item)
        channel = item.channel
    adapter = hub.adapters.get(channel)
    try:
        if adapter is None:
            raise PermanentError(f"no adapter is configured for channel {channel!r}")
        result = await adapter.send(outbound)
    except DeliveryError as exc:
        return await _failed(hub, outbox_id, exc, transient=exc.transient)
    except Exception as exc:  # an adapter bug: retry, it may be a passing condition
        log.exception("adapter %s raised unexpectedly", channel)
        return await _failed(hub, outbox_id, exc, transient=True)
    await _succeeded(hub, outbox_id, result)
    metrics.DELIVERIES.labels(channel, "sent").inc()
    return "sent"


async def _build(hub: Hub, session: AsyncSession, item: OutboxItem) -> OutboundMessage:
    message = await session.get_one(Message, item.message_id)
    conversation = await session.get_one(Conversation, message.conversation_id)
    keys = [key for key in await session.scalars(
        select(Message.thread_key)
        .where(Message.conversation_id == conversation.id, Message.channel == message.channel,
               Message.thread_key.is_not(None), Message.id != message.id)
        .order_by(Message.id)) if key]
    last_inbound = await session.scalar(
        select(Message.thread_key)
        .where(Message.conversation_id == conversation.id, Message.channel == message.channel,
               Message.direction == "inbound", Message.thread_key.is_not(None))
        .order_by(Message.id.desc()).limit(1))
    attachments = []
    for row in await session.scalars(select(Attachment).where(Attachment.message_id == message.id)):
        attachments.append(OutboundAttachment(row.filename, row.content_type,
                                              await hub.blobs.get(row.sha256)))
    return OutboundMessage(
        message_id=message.id,
        conversation_id=conversation.id,
        channel=message.channel,
        to=message.recipient or "",
        body=message.body,
        idempotency_key=item.idempotency_key,
        reference=conversation.reference,
        subject=message.subject or conversation.subject,
        attachments=tuple(attachments),
        automatic=message.automatic,
        reply_token=make_reply_token(conversation.id, hub.reply_secret),
        in_reply_to=last_inbound,
        references=tuple(keys[-20:]),
    )


async def _succeeded(hub: Hub, outbox_id: int, result: SendResult) -> None:
    async with hub.db.transaction() as session:
        item = await session.get_one(OutboxItem, outbox_id)
        item.state = OutboxState.SENT.value
        item.locked_until = None
        item.last_error = None
        message = await session.get_one(Message, item.message_id)
        message.provider_id = result.provider_id
        message.thread_key = result.thread_key
        await record_status(session, message, result.status or DeliveryStatus.SENT.value,
                            provider_id=result.provider_id)
        conversation = await session.get_one(Conversation, message.conversation_id)
        conversation_id, queue = conversation.id, conversation.queue
    hub.events.publish(Event("delivery.status", conversation_id, queue,
                             {"message_id": message.id, "status": message.delivery_status}))


async def _failed(hub: Hub, outbox_id: int, exc: BaseException, *, transient: bool) -> str:
    policy = hub.settings.outbox
    error = f"{type(exc).__name__}: {exc}"[:2000]
    now = utcnow()
    async with hub.db.transaction() as session:
        item = await session.get_one(OutboxItem, outbox_id)
        message = await session.get_one(Message, item.message_id)
        item.last_error = error
        item.locked_until = None
        if transient and item.attempts < policy.max_attempts:
            item.state = OutboxState.PENDING.value
            item.next_attempt_at = now + timedelta(seconds=backoff_seconds(item.attempts, policy))
            outcome = "retry"
        else:
            item.state = OutboxState.DEAD.value
            await record_status(session, message, DeliveryStatus.FAILED.value, detail=error)
            outcome = "dead"
        queue = await session.scalar(select(Conversation.queue).where(
            Conversation.id == message.conversation_id))
    if outcome == "dead":  # staff must see at once that this reply will not arrive
        hub.events.publish(Event("delivery.status", message.conversation_id, queue,
                                 {"message_id": message.id, "status": message.delivery_status}))
    kind = "transient" if transient else "permanent"
    metrics.DELIVERY_FAILURES.labels(item.channel, kind).inc()
    metrics.DELIVERIES.labels(item.channel, outcome).inc()
    log.warning("delivery of outbox item %s failed (%s, %s): %s", outbox_id, kind, outcome,
                type(exc).__name__)
    return outcome
