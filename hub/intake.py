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

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub import lookups, metrics
from hub.acknowledge import Acknowledger
from hub.adapters.base import Unavailable
from hub.assignment import ONLINE, OnlineIds
from hub.events import Event, EventBus
from hub.identities import InvalidAddress, normalize_address
from hub.lookups import LIVE_STATUSES, Lookups
from hub.model import (
    Accepted,
    ConversationStatus,
    DeliveryReport,
    Direction,
    InboundMessage,
    StoredMessage,
    utcnow,
)
from hub.outbound import NoAddressOnChannel, enqueue_outbound
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
from hub.staff_notify import PENDING_EVENTS
from hub.status import apply_report
from hub.storage.blobs import BlobStore
from hub.storage.bounded import column_limit
from hub.storage.db import Database
from hub.storage.errors import is_transient
from hub.storage.ids import ids
from hub.storage.rows import add_row, write_rows_now
from hub.storage.tables import (
    Attachment,
    Contact,
    Conversation,
    Identity,
    Message,
)
from hub.survey import ReplyAnswers
from hub.tokens import new_reference, verify_reply_token

log = logging.getLogger(__name__)

ANOTHER_SENDER = "another_sender"
CUT = "cut_to_fit"  # a value was longer than its column: stored cut (marked "…") or hashed


class IntakeUnavailable(Unavailable):
    """The message could not be committed; the channel must make the sender retry (451, 5xx)."""


class InvalidInbound(ValueError):
    """The adapter handed over something that can never be stored (no sender, no provider id)."""


@dataclass(slots=True)
class _Stored:
    accepted: Accepted
    outbox_ids: list[int]
    queue: str | None


@dataclass(slots=True)
class _NewMessage:
    """An inbound row this transaction writes (hub.storage.rows): an ORM object per message
    cost more than a tenth of the intake in attribute instrumentation and flush bookkeeping."""

    row: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.row["id"])

    @property
    def automatic(self) -> bool:
        return bool(self.row["automatic"])

    @property
    def created_at(self) -> datetime:
        created: datetime = self.row["created_at"]
        return created

    def add_flag(self, flag: str) -> None:
        self.row["flags"] = [*self.row["flags"], flag]


@dataclass(slots=True)
class _Bounce:
    stored: _Stored
    message: _NewMessage
    conversation: Conversation


OPT_KEYWORDS = ("stop", "start")  # InboundMessage.meta["keyword"], set by SMS-like channels
# Any other keyword (Telegram's "ignored" for group traffic) is stored and never routed, too.
ANSWER = "answer"  # meta: a text the channel asks to send back at once (Telegram's /start welcome)
LINK_REFERENCE = "link_reference"  # meta: a first message from an address asks to join the
# contact of that reference (Telegram's /start REF deep link, offered on another channel)
SURVEY = "survey_answer"  # the thread rule of a reply that answered the survey (hub.survey)
LOOKUPS = "hub.intake.lookups"  # the batch's Lookups, in the transaction's session.info


class Intake:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        *,
        router: Callable[[], Router],
        reply_secret: bytes,
        reopen_window: timedelta,
        survey_replies: ReplyAnswers | None = None,
        acknowledger: Acknowledger | None = None,
        on_outbox: Callable[[Sequence[int]], object] | None = None,
        events: EventBus | None = None,
        online: OnlineIds | None = None,
        max_batch: int = 128,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self._router = router
        self._secret = reply_secret
        self._reopen_window = reopen_window
        self._survey_replies = survey_replies
        self._ack = acknowledger
        self._on_outbox = on_outbox
        self._events = events
        self.online = online  # who has a live workspace, for `assign_to = "online"` queues
        self._max_batch = max_batch
        # Messages that arrive while a batch is being stored go into the next one together:
        # one transaction, one look-up per kind and one INSERT per table for all of them.
        self._waiting: list[tuple[InboundMessage, list[str], asyncio.Future[Accepted]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._queuing = asyncio.Lock()
        self._room = asyncio.Event()  # set when a transaction takes messages from _waiting

    async def accept(self, msg: InboundMessage) -> Accepted:
        outcome = (await self.accept_many([msg]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def accept_many(self, msgs: Sequence[InboundMessage]) -> list[Accepted | Exception]:
        """Several messages, threaded in the order given, stored in as few transactions as
        possible. Each entry is that message's `Accepted` or the exception `accept` raises.
        Messages of calls made while a transaction runs are stored together in the next one,
        each call's after those of the calls made before it."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Accepted] | Exception] = []
        try:
            async with self._queuing:  # an attachment's blob is written first: keep turns
                for msg in msgs:
                    try:
                        blob_ids = await self._checked_blobs(msg)
                    except Exception as exc:
                        futures.append(exc)
                        continue
                    future: asyncio.Future[Accepted] = loop.create_future()
                    self._waiting.append((msg, blob_ids, future))
                    futures.append(future)
        finally:
            self._store_soon()  # what was queued is stored even if this caller gave up
        outcomes: list[Accepted | Exception] = []
        for item in futures:
            if isinstance(item, Exception):
                outcomes.append(item)
                continue
            try:
                outcomes.append(await item)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def room(self) -> None:
        """Returns once fewer messages than one transaction takes are waiting to be stored (at
        once if so). A caller with many (the spool worker) hands them over no faster, so that a
        message accepted meanwhile (a chat line) waits behind about two transactions."""
        async with self._queuing:  # callers before us have queued all theirs: they count
            pass
        while len(self._waiting) >= self._max_batch:
            self._store_soon()
            self._room.clear()
            await self._room.wait()

    def _store_soon(self) -> None:
        if self._waiting and (self._runner is None or self._runner.done()):
            self._runner = asyncio.get_running_loop().create_task(self._store_waiting())

    async def close(self, within: float = 10.0) -> None:
        """Lets what is queued be stored (at most `within` seconds), then stops storing: what
        is left is answered IntakeUnavailable (a spooled item is worked again later)."""
        runner = self._runner
        if runner is not None:
            done, _ = await asyncio.wait({runner}, timeout=within)
            if not done:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
        left, self._waiting = self._waiting, []
        for _, _, future in left:
            if not future.done():
                future.set_exception(IntakeUnavailable("the hub is stopping"))

    async def _checked_blobs(self, msg: InboundMessage) -> list[str]:
        _check(msg)
        return [await self.blobs.put(a.data) for a in msg.attachments]

    async def _store_waiting(self) -> None:
        try:
            await self._store_all_waiting()
        finally:
            self._room.set()  # whoever waits for room looks again (and restarts a runner)

    async def _store_all_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[:self._max_batch]
            del self._waiting[:self._max_batch]
            self._room.set()
            started = time.perf_counter()
            try:
                outcomes = await self._store_batch([(msg, blobs) for msg, blobs, _ in batch])
            except BaseException as exc:  # cancelled (the hub stops): nobody may wait forever
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(IntakeUnavailable(type(exc).__name__))
                raise
            seconds = (time.perf_counter() - started) / len(batch)
            for (msg, _, future), outcome in zip(batch, outcomes, strict=True):
                if not isinstance(outcome, Exception):
                    metrics.INTAKE_SECONDS.observe(seconds)
                    counter = (metrics.INBOUND_DUPLICATES if outcome.accepted.duplicate
                               else metrics.INBOUND)
                    counter.labels(msg.channel).inc()
                if future.done():  # its caller gave up (cancelled): the outcome stands
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome.accepted)
            try:
                self._after_commit([o for o in outcomes if isinstance(o, _Stored)])
            except Exception:  # committed all the same (the outbox sweeper finds the sends)
                log.exception("intake: announcing a committed batch failed")

    async def _store_batch(self, items: list[tuple[InboundMessage, list[str]]]
                           ) -> list[_Stored | Exception]:
        """The batch in one transaction; if that fails, each message in its own, so a message
        that cannot be stored costs the others nothing but a second try."""
        if len(items) > 1:
            try:
                return list(await self._transaction(items))
            except Exception as exc:
                log.info("intake batch of %s rolled back (%s); storing each on its own",
                         len(items), type(exc).__name__)
        outcomes: list[_Stored | Exception] = []
        for item in items:
            outcomes.append(await self._store_alone(item))
            if isinstance(outcomes[-1], IntakeUnavailable) and not await self.db.ping():
                # The database is away, not this message's fault: the rest would only wait
                # for it as many times over.
                away = outcomes[-1]
                outcomes += [_unavailable(away.__cause__ or away) for _ in items[len(outcomes):]]
                break
        return outcomes

    async def _store_alone(self, item: tuple[InboundMessage, list[str]]) -> _Stored | Exception:
        msg = item[0]
        for attempt in (1, 2):
            try:
                return (await self._transaction([item]))[0]
            except IntegrityError as exc:
                # A concurrent intake (another process) stored this provider id or created this
                # sender first: a second look sees its rows.
                if attempt == 2:
                    return exc
            except Exception as exc:
                if not is_transient(exc):
                    return exc  # this message cannot be stored as it is: the caller counts it
                log.error("intake could not commit %s message: %s", msg.channel,
                          type(exc).__name__)
                return _unavailable(exc)
        raise AssertionError("unreachable")

    async def _transaction(self, items: list[tuple[InboundMessage, list[str]]]) -> list[_Stored]:
        router = self._router()
        msgs = [msg for msg, _ in items]
        async with self.db.transaction() as session:
            with session.no_autoflush:
                session.info[LOOKUPS] = await lookups.load(
                    session, msgs, self._secret, history_days=router.history_days,
                    once_per=router.once_per_rules)
                await ids(session).reserve("messages", 2 * len(items))
                await ids(session).reserve("conversations", len(items))
                await ids(session).reserve("outbox", len(items))
                stored = []
                for msg, blob_ids in items:
                    stored.append(await self._store(session, msg, blob_ids))
                    await asyncio.sleep(0)  # a batch is milliseconds a message: let 250s out
                staff_events: list[Event] = session.info.setdefault(PENDING_EVENTS, [])
        # Committed: staff notifications (hub.staff_notify) may be announced now.
        for event in staff_events:
            if self._events is not None:
                self._events.publish(event)
        return stored

    def _after_commit(self, stored: Sequence[_Stored]) -> None:
        outbox_ids = [i for one in stored if not one.accepted.duplicate for i in one.outbox_ids]
        if outbox_ids and self._on_outbox is not None:
            self._on_outbox(outbox_ids)
        if self._events is None:
            return
        for one in stored:
            acc = one.accepted
            if not acc.duplicate:
                self._events.publish(Event("message.inbound", acc.conversation_id, one.queue,
                                           {"message_id": acc.message_id,
                                            "new_conversation": acc.new_conversation}))

    async def _store(self, session: AsyncSession, msg: InboundMessage,
                     blob_ids: list[str]) -> _Stored:
        """One message of the batch, in the batch's transaction, with the batch's look-ups."""
        found: Lookups = session.info[LOOKUPS]
        known = found.duplicate(msg)
        if known is not None:
            return _Stored(known, [], None)
        report = msg.delivery_report
        if report is not None:
            bounced = await self._store_delivery_report(session, msg, report)
            if bounced is not None:
                found.remember(msg, bounced.message, bounced.conversation,
                               bounced.conversation.contact_id, False)
                return bounced.stored
        contact_id = await self._contact_for(session, found, msg)
        conversation, rule, is_new = await self._thread(session, found, msg, contact_id)
        message = await _message_row(session, msg, conversation.id, rule)
        if conversation.contact_id != contact_id:
            # Joined by our own thread keys or a signed token, yet written by someone else (a
            # neighbour forwarding our reply): kept in the conversation, and said so to staff.
            message.add_flag(ANOTHER_SENDER)
        add_row(session, Message, **message.row)
        for attachment, sha in zip(msg.attachments, blob_ids, strict=True):
            add_row(session, Attachment, message_id=message.id, filename=attachment.filename,
                    content_type=attachment.content_type, size=len(attachment.data),
                    sha256=sha, content_id=attachment.content_id, inline=attachment.inline)
        _touch(conversation, msg)
        # A survey's answer (a digit) is kept like a keyword: on the conversation, never routed.
        keyword = msg.meta.get("keyword") or (SURVEY if rule == SURVEY else None)
        if keyword in OPT_KEYWORDS:
            await _opt(session, msg, opted_out=keyword == "stop")
        if (report or keyword) and is_new:
            # A bounce of nothing we sent, or a carrier keyword (STOP, HELP) with no request
            # open: kept for the record, never in anybody's open work.
            _file_closed(conversation, self._router().default_queue_name,
                         "bounce" if report else f"keyword-{keyword}")
            outbox_ids: list[int] = []
        elif keyword:
            outbox_ids = []  # on the conversation for staff to see; never routed as a request
        else:
            outbox_ids = await self._route_and_acknowledge(session, found, msg, conversation,
                                                           message, contact_id, is_new)
        if keyword and msg.meta.get(ANSWER):
            outbox_ids += await _answer(session, conversation, msg)
        found.remember(msg, message, conversation, contact_id, is_new)
        accepted = Accepted(message_id=message.id, conversation_id=conversation.id,
                            reference=conversation.reference, new_conversation=is_new)
        return _Stored(accepted, outbox_ids, conversation.queue)

    async def _store_delivery_report(self, session: AsyncSession, msg: InboundMessage,
                                     report: DeliveryReport) -> _Bounce | None:
        """A bounce of one of our messages: mark it, keep the report in that conversation."""
        original = await apply_report(session, msg.channel, report)
        if original is None:
            return None
        conversation = await session.get_one(Conversation, original.conversation_id)
        message = await _message_row(session, msg, conversation.id, "delivery_report")
        add_row(session, Message, **message.row)
        accepted = Accepted(message_id=message.id, conversation_id=conversation.id,
                            reference=conversation.reference)
        return _Bounce(_Stored(accepted, [], conversation.queue), message, conversation)

    async def _contact_for(self, session: AsyncSession, found: Lookups,
                           msg: InboundMessage) -> int:
        """The contact id for the sender, created with its identity on first contact."""
        contact = found.contact(msg.channel, msg.sender)
        if contact is None:
            contact = (await _linked_contact(session, found, msg)
                       or await _new_contact(session, msg))
            add_row(session, Identity, contact_id=contact.id, channel=msg.channel,
                    address=msg.sender, created_at=utcnow())
            found.add_contact(msg.channel, msg.sender, contact)
        else:
            if msg.sender_name and not contact.name:
                contact.name = msg.sender_name
            if msg.language and not contact.language:
                contact.language = msg.language
        if msg.extra_identities:
            await session.flush()  # a new contact's row first: the inserts below refer to it
        for channel, address in msg.extra_identities:
            try:
                address = normalize_address(channel, address)
            except InvalidAddress:
                continue
            if found.contact(channel, address) is None:
                # Taken by another contact already: never move an identity silently.
                await session.execute(_insert_ignoring_conflict(
                    session, contact_id=contact.id, channel=channel, address=address))
        return contact.id

    async def _thread(self, session: AsyncSession, found: Lookups, msg: InboundMessage,
                      contact_id: int) -> tuple[Conversation, str, bool]:
        """Find the conversation this message continues, or open a new one; name the rule."""
        conversation: Conversation | None = None
        rule = "new"
        hints = msg.thread
        if hints.refs:
            conversation, rule = found.by_refs(msg.channel, hints.refs), "references"
        if conversation is None and hints.reply_token:
            conv_id = verify_reply_token(hints.reply_token, self._secret)
            if conv_id is not None:
                conversation, rule = found.conversations.get(conv_id), "reply_token"
        if conversation is None and hints.reference:
            conversation, rule = found.by_reference(hints.reference, contact_id), "reference"
        if conversation is None and hints.continue_latest:
            conversation, rule = found.latest(msg.channel, contact_id), "latest"
        now = msg.received_at
        if conversation is not None and self._can_continue(conversation, now):
            if msg.automatic:
                return conversation, rule, False  # kept with the conversation; changes nothing
            if (self._survey_replies is not None
                    and await self._survey_replies.take(session, conversation, msg)):
                return conversation, SURVEY, False  # an answer, not a reason to reopen
            if conversation.status == ConversationStatus.RESOLVED.value:
                conversation.status = ConversationStatus.OPEN.value
                conversation.resolved_at = None
            elif conversation.status == ConversationStatus.PENDING.value:
                conversation.status = ConversationStatus.OPEN.value
            return conversation, rule, False
        conversation = Conversation(
            id=await ids(session).next("conversations"),
            reference=new_reference(), contact_id=contact_id, channel=msg.channel,
            status=ConversationStatus.OPEN.value, priority="normal", tags=[],
            subject=msg.subject or None, language=msg.language or _known_language(found, msg),
            spam=False,
            auto_replies_sent=0, acknowledged=False, assignee_id=None, queue=None,
            created_at=now, updated_at=utcnow(), last_message_at=now,
        )
        session.add(conversation)
        return conversation, "new", True

    def _can_continue(self, conversation: Conversation, now: datetime) -> bool:
        if conversation.status in LIVE_STATUSES:
            return True
        if conversation.status == ConversationStatus.RESOLVED.value:
            resolved_at = conversation.resolved_at or conversation.updated_at
            return now - resolved_at <= self._reopen_window
        return False

    async def _route_and_acknowledge(self, session: AsyncSession, found: Lookups,
                                     msg: InboundMessage, conversation: Conversation,
                                     message: StoredMessage, contact_id: int,
                                     is_new: bool) -> list[int]:
        ack_due = is_new and self._ack is not None and self._ack.applies(msg)
        folded: list[AutoReply] | None = [] if ack_due else None
        outbox_ids = await self._route(session, found, msg, conversation, message, contact_id,
                                       is_new, folded)
        if ack_due and self._ack is not None and not conversation.spam:
            outbox_ids += await self._ack.acknowledge(session, conversation, msg, folded or (),
                                                      recipient=msg.sender)
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
        router = self._router()
        found = Lookups()
        await lookups.load_for_routing(
            session, found, [conversation.contact_id], [conversation.id], msg.received_at,
            history_days=router.history_days, once_per=router.once_per_rules)
        return await self._route_and_acknowledge(session, found, msg, conversation, first,
                                                 conversation.contact_id, True)

    async def _route(self, session: AsyncSession, found: Lookups, msg: InboundMessage,
                     conversation: Conversation, message: StoredMessage, contact_id: int,
                     is_new: bool, folded: list[AutoReply] | None) -> list[int]:
        router = self._router()
        ctx = RoutingContext(
            message=msg,
            conversation=_snapshot(conversation, is_new),
            contact_id=contact_id,
            now=msg.received_at,
            recent_inbound=found.recent_inbound(contact_id, message.id, router.history_days,
                                                msg.received_at),
            sent_auto_replies=(
                found.live_once_per_keys(msg.received_at, contact_id, conversation.id)
                if router.uses_once_per else frozenset()),
        )
        try:
            decision = router.decide(ctx)
        except Exception as exc:  # a rule bug must not lose or stall the message
            log.exception("routing failed; using the default queue")
            fallback = DefaultQueueRouter(router.default_queue_name)
            decision = fallback.decide(ctx)
            decision.trace.append({"error": f"rule engine failed: {type(exc).__name__}"})
        found.opened_windows({
            reply.once_per_key: msg.received_at + timedelta(seconds=reply.once_per_seconds)
            for reply in decision.auto_replies if not (message.automatic or decision.spam)})
        if self.online is not None:
            session.info.setdefault(ONLINE, self.online)
        return await apply_decision(session, conversation, message, decision,
                                    now=msg.received_at, fold_into=folded,
                                    pending=found.pending_timers(conversation.id),
                                    recipient=msg.sender)


def _unavailable(exc: BaseException) -> IntakeUnavailable:
    unavailable = IntakeUnavailable(type(exc).__name__)
    unavailable.__cause__ = exc
    return unavailable


def _check(msg: InboundMessage) -> None:
    if not msg.provider_id or not msg.sender:
        raise InvalidInbound("an inbound message needs a provider id and a sender")
    if msg.received_at.tzinfo is None:
        raise InvalidInbound("received_at must be timezone-aware")


def _insert_ignoring_conflict(session: AsyncSession, **values: object) -> Any:
    """INSERT INTO identities ... ON CONFLICT DO NOTHING: no exception when another contact
    holds the identity already (on PostgreSQL it waits for that transaction first)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (insert(Identity).values(created_at=utcnow(), **values)
            .on_conflict_do_nothing(index_elements=["channel", "address"]))


async def _message_row(session: AsyncSession, msg: InboundMessage, conversation_id: int,
                       rule: str) -> _NewMessage:
    row: dict[str, Any] = dict(
        id=await ids(session).next("messages"),
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
        html=sanitize_html(msg.html, remote_images=True),
        raw=msg.raw,
        automatic=msg.automatic,
        flags=[*msg.flags, *([CUT] if _cut(msg) else [])],
        meta=dict(msg.meta),
        language=msg.language,
        thread_rule=rule,
        received_at=msg.received_at,
        created_at=msg.received_at,
    )
    return _NewMessage(row)


# The declared lengths, read once: reaching a column's type through its ORM attribute is slow.
_MESSAGE_LIMITS = tuple((name, column_limit(getattr(Message, name))) for name in (
    "provider_id", "thread_key", "sender", "recipient", "subject", "language"))
_NAME_LIMIT = column_limit(Contact.name)
_FILENAME_LIMIT = column_limit(Attachment.filename)
_CONTENT_TYPE_LIMIT = column_limit(Attachment.content_type)


def _cut(msg: InboundMessage) -> bool:
    """Will the columns cut (or, for keys, hash) a value of this message? Staff are told so."""
    values = [(getattr(msg, name), limit) for name, limit in _MESSAGE_LIMITS]
    values.append((msg.sender_name, _NAME_LIMIT))
    for a in msg.attachments:
        values += ((a.filename, _FILENAME_LIMIT), (a.content_type, _CONTENT_TYPE_LIMIT))
    return any(value is not None and len(value) > limit for value, limit in values)


async def _new_contact(session: AsyncSession, msg: InboundMessage) -> Contact:
    contact = Contact(id=await ids(session).next("contacts"), name=msg.sender_name or None,
                      language=msg.language, created_at=utcnow())
    session.add(contact)
    return contact


async def _linked_contact(session: AsyncSession, found: Lookups,
                          msg: InboundMessage) -> Contact | None:
    """The contact a first message from a new address asks to join by a reference it got on
    another channel (a Telegram deep link): holding the unguessable reference is the proof,
    and only an address no contact has yet is linked, so no identity moves silently."""
    reference = str(msg.meta.get(LINK_REFERENCE) or "").upper()
    conversation = next((c for c in found.conversations.values()
                         if reference and c.reference == reference), None)
    if conversation is None:
        return None
    return await session.get(Contact, conversation.contact_id)


async def _answer(session: AsyncSession, conversation: Conversation,
                  msg: InboundMessage) -> list[int]:
    """The answer a keyword asks for (a welcome), on the channel it came by, to its sender."""
    try:
        queued = await enqueue_outbound(session, conversation, str(msg.meta[ANSWER]),
                                        automatic=True, channel=msg.channel,
                                        recipient=msg.sender)
    except NoAddressOnChannel:  # opted out: nothing automatic goes there
        return []
    return [queued.outbox_id]


def _touch(conversation: Conversation, msg: InboundMessage) -> None:
    conversation.last_message_at = max(conversation.last_message_at or msg.received_at,
                                       msg.received_at)
    if not msg.automatic:  # an out-of-office is nobody waiting for an answer
        conversation.last_inbound_at = msg.received_at


def _known_language(found: Lookups, msg: InboundMessage) -> str | None:
    """The sender's stored language (hub.storage.tables.Contact.language): a new conversation
    on any channel is held in it when its first message does not say, so that its
    acknowledgment, status notices, survey and routing (`language`) follow the citizen."""
    contact = found.contact(msg.channel, msg.sender)
    return contact.language if contact is not None else None


def _snapshot(conversation: Conversation, is_new: bool) -> ConversationSnapshot:
    return ConversationSnapshot(
        id=conversation.id, is_new=is_new, channel=conversation.channel,
        status=conversation.status, queue=conversation.queue, priority=conversation.priority,
        tags=frozenset(conversation.tags or ()), reference=conversation.reference,
        auto_replies_sent=conversation.auto_replies_sent or 0,
        language=conversation.language,
    )


def _file_closed(conversation: Conversation, queue: str, tag: str) -> None:
    conversation.status = ConversationStatus.CLOSED.value
    conversation.queue = queue
    conversation.tags = [tag]


async def _opt(session: AsyncSession, msg: InboundMessage, *, opted_out: bool) -> None:
    """STOP / START: the sender's identity on the channel opts out of (or back into) messages."""
    await write_rows_now(session)  # the identity may have been created in this very batch
    await session.execute(
        update(Identity).where(Identity.channel == msg.channel, Identity.address == msg.sender)
        .values(opted_out=opted_out, opted_out_at=msg.received_at if opted_out else None))
