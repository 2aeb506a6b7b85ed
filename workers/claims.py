"""The outbox rows a delivery works on, in Core statements that each serve a whole batch.

- `claim`: one UPDATE ... RETURNING moves every due row among the given ids from pending (or
  from sending with a lapsed lease) to sending. A row is claimed once per attempt; a sent or
  dead row, or one whose backoff has not run out, is never claimed.
- `load`: what the sends need (message, conversation, thread keys, attachments) in three
  SELECTs for the batch, whatever its size.
- `record`: the outcomes of many sends in one transaction: outbox rows, messages (forward-only
  status, see hub.status), delivery events, and what the live views are told.

The transactions are the caller's (workers/delivery.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, bindparam, case, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.model import DeliveryStatus, Direction, OutboxState
from hub.status import RANK, rank_sql
from hub.storage.tables import (
    Attachment,
    Conversation,
    DeliveryEvent,
    Identity,
    Message,
    OutboxItem,
)

MAX_REFERENCES = 20  # thread keys named in References (the newest)


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    filename: str
    content_type: str
    sha256: str


@dataclass(slots=True)
class Claimed:
    """A claimed outbox row and what its send needs (filled in by `load`)."""

    outbox_id: int
    message_id: int
    channel: str
    idempotency_key: str
    attempts: int  # this attempt included
    conversation_id: int = 0
    to: str = ""
    body: str = ""
    subject: str | None = None
    automatic: bool = False
    reference: str = ""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: list[AttachmentRef] = field(default_factory=list)
    internal: bool = False  # a staff notification: sent with no reply token or thread headers


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: `state` is sent, pending (a retry) or dead."""

    item: Claimed
    state: str
    provider_id: str | None = None
    thread_key: str | None = None
    status: str = DeliveryStatus.SENT.value
    error: str | None = None
    next_attempt_at: datetime | None = None
    opted_out: bool = False  # the provider says the recipient refuses our messages


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A message whose delivery status a recorded outcome touched: for the live views."""

    message_id: int
    conversation_id: int
    queue: str | None
    status: str | None


def _due(now: datetime) -> Any:
    return or_(and_(OutboxItem.state == OutboxState.PENDING.value,
                    OutboxItem.next_attempt_at <= now),
               and_(OutboxItem.state == OutboxState.SENDING.value,
                    OutboxItem.locked_until < now))


async def claim(conn: AsyncConnection, outbox_ids: Sequence[int], now: datetime,
                lease: timedelta) -> list[Claimed]:
    """Claim the due rows among `outbox_ids` (one statement); the others are not ours now."""
    if not outbox_ids:
        return []
    # PostgreSQL: rows are locked in id order, so two workers given overlapping ids never
    # deadlock; one that finds a row locked waits for that commit (a few milliseconds) and
    # checks again: a row claimed meanwhile is no longer due. Not SKIP LOCKED: the row may be
    # locked by the sweeper, which is about to hold it back from the next sweeps, and a row
    # passed by now would wait out that hold. SQLite renders no FOR UPDATE: its one writer
    # holds the whole database.
    chosen = (select(OutboxItem.id)
              .where(OutboxItem.id.in_(sorted(set(outbox_ids))), _due(now))
              .order_by(OutboxItem.id)
              .with_for_update())
    rows = await conn.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(chosen))
        .values(state=OutboxState.SENDING.value, attempts=OutboxItem.attempts + 1,
                locked_until=now + lease, updated_at=now)
        .returning(OutboxItem.id, OutboxItem.message_id, OutboxItem.channel,
                   OutboxItem.idempotency_key, OutboxItem.attempts))
    return [Claimed(*row) for row in rows]


async def load(conn: AsyncConnection, items: Sequence[Claimed]) -> None:
    """Fill in each item's message, conversation, thread keys and attachments."""
    by_message = {item.message_id: item for item in items}
    if not by_message:
        return
    rows = await conn.execute(
        select(Message.id, Message.conversation_id, Message.recipient, Message.body,
               Message.subject, Message.automatic, Conversation.reference, Conversation.subject,
               Message.direction)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id.in_(list(by_message))))
    for mid, conversation_id, recipient, body, subject, automatic, reference, topic, way in rows:
        item = by_message[mid]
        item.conversation_id, item.to, item.body = conversation_id, recipient or "", body
        item.subject, item.automatic, item.reference = subject or topic, automatic, reference
        if way == Direction.NOTE.value:
            # A staff notification (hub.staff_notify): nothing that could thread an answer
            # into the citizen's conversation.
            item.internal, item.reference = True, ""
    await _load_threads(conn, [item for item in items if not item.internal])
    await _load_attachments(conn, by_message)


async def _load_threads(conn: AsyncConnection, items: Sequence[Claimed]) -> None:
    """References: the conversation's other thread keys on the channel, oldest first;
    In-Reply-To: the key of the citizen's latest message there."""
    rows = (await conn.execute(
        select(Message.id, Message.conversation_id, Message.channel, Message.direction,
               Message.thread_key)
        .where(Message.conversation_id.in_({item.conversation_id for item in items}),
               Message.thread_key.is_not(None))
        .order_by(Message.id))).all()
    for item in items:
        keys: list[str] = []
        for mid, conversation_id, channel, direction, key in rows:
            if conversation_id != item.conversation_id or channel != item.channel:
                continue
            if direction == Direction.INBOUND.value:
                item.in_reply_to = key
            if key and mid != item.message_id:
                keys.append(key)
        item.references = tuple(keys[-MAX_REFERENCES:])


async def _load_attachments(conn: AsyncConnection, by_message: dict[int, Claimed]) -> None:
    rows = await conn.execute(
        select(Attachment.message_id, Attachment.filename, Attachment.content_type,
               Attachment.sha256)
        .where(Attachment.message_id.in_(list(by_message))).order_by(Attachment.id))
    for mid, filename, content_type, sha256 in rows:
        by_message[mid].attachments.append(AttachmentRef(filename, content_type, sha256))


# -- recording outcomes -------------------------------------------------------------------------

_outbox = OutboxItem.__table__.c
_messages = Message.__table__.c
_ADVANCES = rank_sql(_messages.delivery_status) < bindparam("m_rank", type_=Integer)

_OUTBOX_DONE = (update(OutboxItem).where(OutboxItem.id == bindparam("o_id"))
                .values(state=bindparam("o_state", type_=String),
                        last_error=bindparam("o_error", type_=_outbox.last_error.type),
                        locked_until=None,
                        updated_at=bindparam("o_now", type_=_outbox.updated_at.type)))
_OUTBOX_RETRY = _OUTBOX_DONE.values(
    next_attempt_at=bindparam("o_next", type_=_outbox.next_attempt_at.type))
_MESSAGE_SENT = (update(Message).where(Message.id == bindparam("m_id"))
                 .values(provider_id=bindparam("m_provider", type_=_messages.provider_id.type),
                         thread_key=bindparam("m_thread", type_=_messages.thread_key.type),
                         delivery_status=case(
                             (_ADVANCES, bindparam("m_status", type_=String)),
                             else_=Message.delivery_status)))
_MESSAGE_FAILED = (update(Message).where(Message.id == bindparam("m_id"))
                   .values(delivery_status=case(
                               (_ADVANCES, DeliveryStatus.FAILED.value),
                               else_=Message.delivery_status),
                           delivery_error=case(
                               (_ADVANCES, bindparam("m_error", type_=_messages.delivery_error.type)),
                               else_=Message.delivery_error)))


async def record(conn: AsyncConnection, outcomes: Sequence[Outcome],
                 now: datetime) -> list[StatusChange]:
    """Store the outcomes (a few executemany statements); return the messages whose status
    the live views should hear about (sent and dead, not retries)."""
    await _record_outbox(conn, outcomes, now)
    sent = [o for o in outcomes if o.state == OutboxState.SENT.value]
    dead = [o for o in outcomes if o.state == OutboxState.DEAD.value]
    if sent:
        await conn.execute(_MESSAGE_SENT, [
            {"m_id": o.item.message_id, "m_provider": o.provider_id, "m_thread": o.thread_key,
             "m_status": o.status, "m_rank": RANK.get(o.status, -1)} for o in sent])
    if dead:
        await conn.execute(_MESSAGE_FAILED, [
            {"m_id": o.item.message_id, "m_error": o.error,
             "m_rank": RANK[DeliveryStatus.FAILED.value]} for o in dead])
        await _opt_out(conn, [o for o in dead if o.opted_out], now)
    events = [{"message_id": o.item.message_id, "status": o.status, "provider_id": o.provider_id,
               "detail": None, "created_at": now} for o in sent]
    events += [{"message_id": o.item.message_id, "status": DeliveryStatus.FAILED.value,
                "provider_id": None, "detail": o.error, "created_at": now} for o in dead]
    if not events:
        return []
    await conn.execute(insert(DeliveryEvent), events)
    return await _changes(conn, [o.item.message_id for o in (*sent, *dead)])


async def _opt_out(conn: AsyncConnection, outcomes: Sequence[Outcome], now: datetime) -> None:
    """The provider refused a send because the citizen opted out: so the hub knows it too."""
    for outcome in outcomes:
        await conn.execute(
            update(Identity)
            .where(Identity.channel == outcome.item.channel, Identity.address == outcome.item.to,
                   Identity.opted_out.is_(False))
            .values(opted_out=True, opted_out_at=now))


async def _record_outbox(conn: AsyncConnection, outcomes: Sequence[Outcome],
                         now: datetime) -> None:
    done = [{"o_id": o.item.outbox_id, "o_state": o.state, "o_error": o.error, "o_now": now}
            for o in outcomes if o.state != OutboxState.PENDING.value]
    retry = [{"o_id": o.item.outbox_id, "o_state": o.state, "o_error": o.error, "o_now": now,
              "o_next": o.next_attempt_at} for o in outcomes if o.state == OutboxState.PENDING.value]
    for statement, params in ((_OUTBOX_DONE, done), (_OUTBOX_RETRY, retry)):
        if params:
            await conn.execute(statement, params)


async def _changes(conn: AsyncConnection, message_ids: list[int]) -> list[StatusChange]:
    rows = await conn.execute(
        select(Message.id, Message.conversation_id, Conversation.queue, Message.delivery_status)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id.in_(message_ids)))
    return [StatusChange(*row) for row in rows]
