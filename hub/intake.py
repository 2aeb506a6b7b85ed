"""The intake: InboundMessage -> dedupe -> contact -> thread -> persist -> route -> commit -> publish.

Everything a message changes (its row, its contact, its conversation, the routing decision, any
acknowledgment or auto-reply outbox rows) commits in one transaction, and `accept` returns only
after that commit. A retried delivery of the same provider id is answered with the stored
message (`duplicate=True`), also when twenty copies arrive at once: the unique constraint on
(channel, provider_id) decides, and the losers read the winner's row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import metrics
from hub.acknowledge import Acknowledger
from hub.adapters.base import Unavailable
from hub.events import Event, EventBus
from hub.identities import InvalidAddress, normalize_address
from hub.model import (
    Accepted,
    ConversationStatus,
    DeliveryReport,
    Direction,
    InboundMessage,
    utcnow,
)
from hub.routing import (
    AutoReply,
    ConversationSnapshot,
    DefaultQueueRouter,
    Router,
    RoutingContext,
)
from hub.routing.apply import apply_decision
from hub.routing.replay import as_inbound
from hub.sanitize import sanitize_html
from hub.status import apply_report
from hub.storage.blobs import BlobStore
from hub.storage.bounded import column_limit
from hub.storage.db import Database
from hub.storage.errors import is_transient
from hub.storage.groupcommit import GroupCommit
from hub.storage.tables import (
    Attachment,
    AutoReplyLog,
    Contact,
    Conversation,
    Identity,
    Message,
)
from hub.tokens import new_reference, verify_reply_token

log = logging.getLogger(__name__)

ANOTHER_SENDER = "another_sender"
CUT = "cut_to_fit"  # a value was longer than its column: stored cut (marked "…") or hashed
LIVE_STATUSES = (ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)


class IntakeUnavailable(Unavailable):
    """The message could not be committed; the channel must make the sender retry (451, 5xx)."""


class InvalidInbound(ValueError):
    """The adapter handed over something that can never be stored (no sender, no provider id)."""


@dataclass(slots=True)
class _Stored:
    accepted: Accepted
    outbox_ids: list[int]
    queue: str | None


class Intake:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        *,
        router: Callable[[], Router],
        reply_secret: bytes,
        reopen_window: timedelta,
        acknowledger: Acknowledger | None = None,
        on_outbox: Callable[[Sequence[int]], object] | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self._router = router
        self._secret = reply_secret
        self._reopen_window = reopen_window
        self._ack = acknowledger
        self._on_outbox = on_outbox
        self._events = events
        # SQLite has one writer: concurrent messages share a commit instead of queueing for one.
        self._group = GroupCommit(db) if db.is_sqlite else None

    async def accept(self, msg: InboundMessage) -> Accepted:
        return await self._accept_with_blobs(msg, await self._checked_blobs(msg))

    async def accept_many(self, msgs: Sequence[InboundMessage]) -> list[Accepted | Exception]:
        """Several messages, threaded in the order given; on SQLite they share one commit.

        Each entry is that message's `Accepted` or the exception `accept` would have raised.
        """
        prepared: list[tuple[InboundMessage, list[str]] | Exception] = []
        for msg in msgs:
            try:
                prepared.append((msg, await self._checked_blobs(msg)))
            except Exception as exc:
                prepared.append(exc)

        async def one(item: tuple[InboundMessage, list[str]] | Exception) -> Accepted | Exception:
            if isinstance(item, Exception):
                return item
            try:
                return await self._accept_with_blobs(*item)
            except Exception as exc:
                return exc

        if self._group is None:
            # Concurrent PostgreSQL transactions would not see each other's new conversations.
            return [await one(item) for item in prepared]
        # Tasks start in order and each queues its unit of work before its first await.
        return list(await asyncio.gather(*(one(item) for item in prepared)))

    async def _checked_blobs(self, msg: InboundMessage) -> list[str]:
        _check(msg)
        return [await self.blobs.put(a.data) for a in msg.attachments]

    async def _accept_with_blobs(self, msg: InboundMessage, blob_ids: list[str]) -> Accepted:
        started = time.perf_counter()
        try:
            stored = await self._store_once(msg, blob_ids)
        except Exception as exc:
            if not is_transient(exc):
                raise  # this message cannot be stored as it is: the caller counts it
            log.error("intake could not commit %s message: %s", msg.channel, type(exc).__name__)
            raise IntakeUnavailable(type(exc).__name__) from exc
        metrics.INTAKE_SECONDS.observe(time.perf_counter() - started)
        if stored.accepted.duplicate:
            metrics.INBOUND_DUPLICATES.labels(msg.channel).inc()
            return stored.accepted
        metrics.INBOUND.labels(msg.channel).inc()
        self._after_commit(stored)
        return stored.accepted

    async def _store_once(self, msg: InboundMessage, blob_ids: list[str]) -> _Stored:
        try:
            # No look-up first: the unique constraint catches a retry, and retries are rare.
            if self._group is not None:
                return await self._group.run(lambda session: self._store(session, msg, blob_ids))
            async with self.db.transaction() as session:
                return await self._store(session, msg, blob_ids)
        except IntegrityError:
            # Another accept of the same provider id committed first: answer with its row.
            async with self.db.read() as session:
                existing = await _find_existing(session, msg)
            if existing is None:
                raise
            return _Stored(existing, [], None)

    def _after_commit(self, stored: _Stored) -> None:
        if stored.outbox_ids and self._on_outbox is not None:
            self._on_outbox(stored.outbox_ids)
        if self._events is not None:
            acc = stored.accepted
            self._events.publish(Event("message.inbound", acc.conversation_id, stored.queue,
                                       {"message_id": acc.message_id,
                                        "new_conversation": acc.new_conversation}))

    async def _store(self, session: AsyncSession, msg: InboundMessage,
                     blob_ids: list[str]) -> _Stored:
        report = msg.delivery_report
        if report is not None:
            bounced = await self._store_delivery_report(session, msg, report)
            if bounced is not None:
                return bounced
        contact_id = await self._contact_for(session, msg)
        conversation, rule, is_new = await self._thread(session, msg, contact_id)
        message = _message_row(msg, conversation.id, rule)
        if conversation.contact_id != contact_id:
            # Joined by our own thread keys or a signed token, yet written by someone else (a
            # neighbour forwarding our reply): kept in the conversation, and said so to staff.
            message.flags = [*message.flags, ANOTHER_SENDER]
        session.add(message)
        await session.flush()
        for attachment, sha in zip(msg.attachments, blob_ids, strict=True):
            session.add(Attachment(
                message_id=message.id, filename=attachment.filename,
                content_type=attachment.content_type, size=len(attachment.data),
                sha256=sha, content_id=attachment.content_id, inline=attachment.inline,
            ))
        _touch(conversation, msg)
        if report and is_new:
            # A bounce of nothing we sent: kept for the record, never in anybody's open work.
            _file_unmatched_report(conversation, self._router().default_queue_name)
            outbox_ids: list[int] = []
        else:
            outbox_ids = await self._route_and_acknowledge(session, msg, conversation, message,
                                                           contact_id, is_new)
        await session.flush()
        accepted = Accepted(message_id=message.id, conversation_id=conversation.id,
                            reference=conversation.reference, new_conversation=is_new)
        return _Stored(accepted, outbox_ids, conversation.queue)

    async def _store_delivery_report(self, session: AsyncSession, msg: InboundMessage,
                                     report: DeliveryReport) -> _Stored | None:
        """A bounce of one of our messages: mark it, keep the report in that conversation."""
        original = await apply_report(session, msg.channel, report)
        if original is None:
            return None
        conversation = await session.get_one(Conversation, original.conversation_id)
        message = _message_row(msg, conversation.id, "delivery_report")
        session.add(message)
        await session.flush()
        accepted = Accepted(message_id=message.id, conversation_id=conversation.id,
                            reference=conversation.reference)
        return _Stored(accepted, [], conversation.queue)

    async def _contact_for(self, session: AsyncSession, msg: InboundMessage) -> int:
        """The contact id for the sender, created with its identity on first contact."""
        contact = await session.scalar(
            select(Contact).join(Identity, Identity.contact_id == Contact.id)
            .where(Identity.channel == msg.channel, Identity.address == msg.sender))
        if contact is None:
            contact_id = await _create_contact(session, msg)
        else:
            contact_id = contact.id
            if msg.sender_name and not contact.name:
                contact.name = msg.sender_name
            if msg.language and not contact.language:
                contact.language = msg.language
        for channel, address in msg.extra_identities:
            try:
                address = normalize_address(channel, address)
            except InvalidAddress:
                continue
            await _claim_identity(session, contact_id, channel, address)
        return contact_id

    async def _thread(self, session: AsyncSession, msg: InboundMessage,
                      contact_id: int) -> tuple[Conversation, str, bool]:
        """Find the conversation this message continues, or open a new one; name the rule."""
        found: Conversation | None = None
        rule = "new"
        hints = msg.thread
        if hints.refs:
            found, rule = await _by_refs(session, msg.channel, hints.refs), "references"
        if found is None and hints.reply_token:
            conv_id = verify_reply_token(hints.reply_token, self._secret)
            if conv_id is not None:
                found, rule = await session.get(Conversation, conv_id), "reply_token"
        if found is None and hints.reference:
            found, rule = await _by_reference(session, hints.reference, contact_id), "reference"
        if found is None and hints.continue_latest:
            found, rule = await _latest(session, msg.channel, contact_id), "latest"
        now = msg.received_at
        if found is not None and self._can_continue(found, now):
            if msg.automatic:
                return found, rule, False  # kept with the conversation; it changes nothing
            if found.status == ConversationStatus.RESOLVED.value:
                found.status = ConversationStatus.OPEN.value
                found.resolved_at = None
            elif found.status == ConversationStatus.PENDING.value:
                found.status = ConversationStatus.OPEN.value
            return found, rule, False
        conversation = Conversation(
            reference=new_reference(), contact_id=contact_id, channel=msg.channel,
            status=ConversationStatus.OPEN.value, priority="normal", tags=[],
            subject=msg.subject or None, language=msg.language,
            created_at=now, last_message_at=now,
        )
        session.add(conversation)
        await session.flush()
        return conversation, "new", True

    def _can_continue(self, conversation: Conversation, now: datetime) -> bool:
        if conversation.status in LIVE_STATUSES:
            return True
        if conversation.status == ConversationStatus.RESOLVED.value:
            resolved_at = conversation.resolved_at or conversation.updated_at
            return now - resolved_at <= self._reopen_window
        return False

    async def _route_and_acknowledge(self, session: AsyncSession, msg: InboundMessage,
                                     conversation: Conversation, message: Message,
                                     contact_id: int, is_new: bool) -> list[int]:
        ack_due = is_new and self._ack is not None and self._ack.applies(msg)
        folded: list[AutoReply] | None = [] if ack_due else None
        outbox_ids = await self._route(session, msg, conversation, message, contact_id, is_new,
                                       folded)
        if ack_due and self._ack is not None and not conversation.spam:
            outbox_ids += await self._ack.acknowledge(session, conversation, msg, folded or ())
        return outbox_ids

    async def reroute(self, session: AsyncSession, conversation: Conversation) -> list[int]:
        """Route a conversation again as if its first message had just arrived ("not spam"):
        rules, queue, timers and the acknowledgment, in the caller's transaction. Returns the
        outbox ids to hand to the jobs after the commit."""
        first = await session.scalar(
            select(Message).where(Message.conversation_id == conversation.id,
                                  Message.direction == Direction.INBOUND.value)
            .order_by(Message.id).limit(1))
        if first is None:
            return []
        types = list(await session.scalars(
            select(Attachment.content_type).where(Attachment.message_id == first.id)))
        conversation.spam, conversation.queue = False, None
        conversation.status = ConversationStatus.OPEN.value
        msg = replace(as_inbound(first, types), received_at=utcnow())  # as if it came now
        return await self._route_and_acknowledge(session, msg, conversation, first,
                                                 conversation.contact_id, True)

    async def _route(self, session: AsyncSession, msg: InboundMessage, conversation: Conversation,
                     message: Message, contact_id: int, is_new: bool,
                     folded: list[AutoReply] | None) -> list[int]:
        router = self._router()
        ctx = RoutingContext(
            message=msg,
            conversation=_snapshot(conversation, is_new),
            contact_id=contact_id,
            now=msg.received_at,
            recent_inbound=await _recent_inbound(session, contact_id, message.id,
                                                 router.history_days, msg.received_at),
            sent_auto_replies=(
                await _live_once_per_keys(session, msg.received_at, contact_id, conversation.id)
                if router.uses_once_per else frozenset()),
        )
        try:
            decision = router.decide(ctx)
        except Exception as exc:  # a rule bug must not lose or stall the message
            log.exception("routing failed; using the default queue")
            fallback = DefaultQueueRouter(router.default_queue_name)
            decision = fallback.decide(ctx)
            decision.trace.append({"error": f"rule engine failed: {type(exc).__name__}"})
        return await apply_decision(session, conversation, message, decision,
                                    now=msg.received_at, fold_into=folded)


def _check(msg: InboundMessage) -> None:
    if not msg.provider_id or not msg.sender:
        raise InvalidInbound("an inbound message needs a provider id and a sender")
    if msg.received_at.tzinfo is None:
        raise InvalidInbound("received_at must be timezone-aware")


async def _find_existing(session: AsyncSession, msg: InboundMessage) -> Accepted | None:
    row = (await session.execute(
        select(Message.id, Message.conversation_id, Conversation.reference)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.channel == msg.channel, Message.provider_id == msg.provider_id)
    )).first()
    if row is None:
        return None
    return Accepted(message_id=row[0], conversation_id=row[1], reference=row[2], duplicate=True)


def _insert_ignoring_conflict(session: AsyncSession, **values: object) -> Any:
    """INSERT INTO identities ... ON CONFLICT DO NOTHING RETURNING contact_id.

    No savepoint and no exception when a concurrent intake took the identity first: on
    PostgreSQL the insert waits for that transaction and then inserts nothing.
    """
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (insert(Identity).values(created_at=utcnow(), **values)
            .on_conflict_do_nothing(index_elements=["channel", "address"])
            .returning(Identity.contact_id))


async def _create_contact(session: AsyncSession, msg: InboundMessage) -> int:
    name = msg.sender_name or None
    contact_id = await session.scalar(
        insert(Contact).values(name=name, language=msg.language, created_at=utcnow())
        .returning(Contact.id))
    won = await session.scalar(_insert_ignoring_conflict(
        session, contact_id=contact_id, channel=msg.channel, address=msg.sender))
    if won is not None:
        return int(won)
    # Another intake created this sender a moment ago: use theirs, drop ours.
    await session.execute(delete(Contact).where(Contact.id == contact_id))
    existing = await session.scalar(select(Identity.contact_id).where(
        Identity.channel == msg.channel, Identity.address == msg.sender))
    assert existing is not None
    return int(existing)


async def _claim_identity(session: AsyncSession, contact_id: int, channel: str,
                          address: str) -> None:
    # Taken by another contact already: never move an identity silently.
    await session.execute(_insert_ignoring_conflict(
        session, contact_id=contact_id, channel=channel, address=address))


async def _by_refs(session: AsyncSession, channel: str,
                   refs: Sequence[str]) -> Conversation | None:
    conv_id = await session.scalar(
        select(Message.conversation_id)
        .where(Message.channel == channel, Message.thread_key.in_(list(refs)[-50:]))
        .order_by(Message.id.desc()).limit(1))
    return None if conv_id is None else await session.get(Conversation, conv_id)


async def _by_reference(session: AsyncSession, reference: str,
                        contact_id: int) -> Conversation | None:
    """Only the conversation's own contact may continue it by quoting its reference."""
    return await session.scalar(
        select(Conversation).where(Conversation.reference == reference.upper(),
                                   Conversation.contact_id == contact_id))


async def _latest(session: AsyncSession, channel: str, contact_id: int) -> Conversation | None:
    return await session.scalar(
        select(Conversation)
        .where(Conversation.contact_id == contact_id, Conversation.channel == channel,
               Conversation.status.in_([*LIVE_STATUSES, ConversationStatus.RESOLVED.value]))
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc()).limit(1))


async def _recent_inbound(session: AsyncSession, contact_id: int, exclude_id: int, days: int,
                          now: datetime) -> tuple[datetime, ...]:
    if days <= 0:
        return ()
    rows = await session.scalars(
        select(Message.created_at)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.contact_id == contact_id, Message.direction == "inbound",
               Message.id != exclude_id, Message.created_at >= now - timedelta(days=days))
        .order_by(Message.created_at.desc()).limit(1000))
    return tuple(rows)


async def _live_once_per_keys(session: AsyncSession, now: datetime, contact_id: int,
                              conversation_id: int) -> frozenset[str]:
    """The once_per keys (`rule:<id>:contact:<n>` / `...:conversation:<n>`) still in force."""
    rows = await session.scalars(
        select(AutoReplyLog.once_per_key).where(
            AutoReplyLog.expires_at > now,
            AutoReplyLog.once_per_key.endswith(f":contact:{contact_id}")
            | AutoReplyLog.once_per_key.endswith(f":conversation:{conversation_id}")))
    return frozenset(rows)


def _message_row(msg: InboundMessage, conversation_id: int, rule: str) -> Message:
    return Message(
        conversation_id=conversation_id,
        direction=Direction.INBOUND.value,
        channel=msg.channel,
        provider_id=msg.provider_id,
        thread_key=msg.thread_key,
        sender=msg.sender,
        recipient=msg.recipient,
        subject=msg.subject,
        body=msg.text,
        full_text=msg.full_text,
        html=sanitize_html(msg.html),
        raw=msg.raw,
        automatic=msg.automatic,
        flags=[*msg.flags, *([CUT] if _cut(msg) else [])],
        meta=dict(msg.meta),
        language=msg.language,
        thread_rule=rule,
        received_at=msg.received_at,
        created_at=msg.received_at,
    )


def _cut(msg: InboundMessage) -> bool:
    """Will the columns cut (or, for keys, hash) a value of this message? Staff are told so."""
    fields = ((msg.provider_id, Message.provider_id), (msg.thread_key, Message.thread_key),
              (msg.sender, Message.sender), (msg.recipient, Message.recipient),
              (msg.subject, Message.subject), (msg.language, Message.language),
              (msg.sender_name, Contact.name))
    files = ((value, column) for a in msg.attachments
             for value, column in ((a.filename, Attachment.filename),
                                   (a.content_type, Attachment.content_type)))
    return any(value is not None and len(value) > column_limit(column)
               for value, column in (*fields, *files))


def _touch(conversation: Conversation, msg: InboundMessage) -> None:
    conversation.last_message_at = max(conversation.last_message_at or msg.received_at,
                                       msg.received_at)
    if not msg.automatic:  # an out-of-office is nobody waiting for an answer
        conversation.last_inbound_at = msg.received_at


def _snapshot(conversation: Conversation, is_new: bool) -> ConversationSnapshot:
    return ConversationSnapshot(
        id=conversation.id, is_new=is_new, channel=conversation.channel,
        status=conversation.status, queue=conversation.queue, priority=conversation.priority,
        tags=frozenset(conversation.tags or ()), reference=conversation.reference,
        auto_replies_sent=conversation.auto_replies_sent or 0,
    )


def _file_unmatched_report(conversation: Conversation, queue: str) -> None:
    conversation.status = ConversationStatus.CLOSED.value
    conversation.queue = queue
    conversation.tags = ["bounce"]
