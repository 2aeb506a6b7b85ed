"""What the intake needs to know from the database about a batch of messages, read with a few
statements for the whole batch, then kept current in memory while the batch is worked in order.

One statement per kind of look-up (retries already stored, senders' contacts, conversations a
message may continue, the contacts' recent messages, auto-reply windows still open, timers still
pending) instead of one per message: a batch of 100 mails costs a dozen reads, not a thousand.
A message later in the batch sees what an earlier one did (a new conversation it replies to,
the acknowledgment's once_per window, the contact just created), exactly as if each had been
committed on its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import Accepted, ConversationStatus, Direction, InboundMessage, StoredMessage
from hub.routing.apply import pending_timers
from hub.storage.tables import AutoReplyLog, Contact, Conversation, Identity, Message
from hub.tokens import verify_reply_token

LIVE_STATUSES = (ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)
CONTINUABLE = (*LIVE_STATUSES, ConversationStatus.RESOLVED.value)
MAX_REFS = 50  # the newest References a message is threaded by
LATEST_PER_CONTACT = 3  # continuable conversations read per contact and channel
MAX_RECENT = 1000


def _fitter(column: Any) -> Callable[[str], str]:
    """`value -> value as the column stores it` (cut or hashed when too long), to match read
    rows; taken once, since reaching a column's type through its ORM attribute is slow."""
    fit: Callable[[str], str] = column.type.fit
    return fit


_PROVIDER_ID = _fitter(Message.provider_id)
_ADDRESS = _fitter(Identity.address)
_THREAD_KEY = _fitter(Message.thread_key)


@dataclass
class Lookups:
    """The batch's view of the database; `remember` after each message keeps it current."""

    duplicates: dict[tuple[str, str], Accepted] = field(default_factory=dict)
    contacts: dict[tuple[str, str], Contact] = field(default_factory=dict)
    by_thread_key: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    conversations: dict[int, Conversation] = field(default_factory=dict)
    by_contact: dict[tuple[int, str], list[Conversation]] = field(
        default_factory=lambda: defaultdict(list))
    recent: dict[int, list[tuple[int, datetime]]] = field(
        default_factory=lambda: defaultdict(list))
    once_per: dict[str, datetime] = field(default_factory=dict)
    timers: dict[int, set[tuple[str, str]]] = field(default_factory=dict)

    # -- what a message asks --------------------------------------------------------------

    def duplicate(self, msg: InboundMessage) -> Accepted | None:
        return self.duplicates.get((msg.channel, _PROVIDER_ID(msg.provider_id)))

    def contact(self, channel: str, address: str) -> Contact | None:
        return self.contacts.get((channel, _ADDRESS(address)))

    def by_refs(self, channel: str, refs: Sequence[str]) -> Conversation | None:
        """The conversation of the newest stored message whose thread key is among `refs`."""
        found = [self.by_thread_key.get((channel, _THREAD_KEY(ref)))
                 for ref in list(refs)[-MAX_REFS:]]
        hits = [hit for hit in found if hit is not None]
        return self.conversations.get(max(hits)[1]) if hits else None

    def by_reference(self, reference: str, contact_id: int) -> Conversation | None:
        reference = reference.upper()
        return next((c for c in self.conversations.values()
                     if c.reference == reference and c.contact_id == contact_id), None)

    def latest(self, channel: str, contact_id: int) -> Conversation | None:
        candidates = [c for c in self.by_contact.get((contact_id, channel), ())
                      if c.status in CONTINUABLE]
        return max(candidates, key=lambda c: (c.last_message_at, c.id), default=None)

    def recent_inbound(self, contact_id: int, exclude_id: int, days: int,
                       now: datetime) -> tuple[datetime, ...]:
        if days <= 0:
            return ()
        since = now - timedelta(days=days)
        times = sorted((at for message_id, at in self.recent.get(contact_id, ())
                        if message_id != exclude_id and at >= since), reverse=True)
        return tuple(times[:MAX_RECENT])

    def live_once_per_keys(self, now: datetime, contact_id: int,
                           conversation_id: int) -> frozenset[str]:
        """The once_per keys (`rule:<id>:contact:<n>` / `...:conversation:<n>`) in force."""
        ends = (f":contact:{contact_id}", f":conversation:{conversation_id}")
        return frozenset(key for key, expires in self.once_per.items()
                         if expires > now and key.endswith(ends))

    def pending_timers(self, conversation_id: int) -> set[tuple[str, str]]:
        return self.timers.setdefault(conversation_id, set())

    # -- what a message did ---------------------------------------------------------------

    def add_contact(self, channel: str, address: str, contact: Contact) -> None:
        self.contacts[(channel, _ADDRESS(address))] = contact

    def remember(self, msg: InboundMessage, message: StoredMessage, conversation: Conversation,
                 contact_id: int, is_new: bool) -> None:
        self.duplicates[(msg.channel, _PROVIDER_ID(msg.provider_id))] = Accepted(
            message_id=message.id, conversation_id=conversation.id,
            reference=conversation.reference, duplicate=True)
        self.conversations[conversation.id] = conversation
        if is_new:
            self.by_contact[(conversation.contact_id, conversation.channel)].append(conversation)
        if msg.thread_key:
            self.by_thread_key[(msg.channel, _THREAD_KEY(msg.thread_key))] = (
                message.id, conversation.id)
        self.recent[contact_id].append((message.id, message.created_at))

    def opened_windows(self, keys: dict[str, datetime]) -> None:
        for key, expires in keys.items():
            self.once_per[key] = max(expires, self.once_per.get(key, expires))


async def load(session: AsyncSession, msgs: Sequence[InboundMessage], secret: bytes, *,
               history_days: int, once_per: frozenset[str]) -> Lookups:
    """Everything the batch `msgs` will ask, in a few statements."""
    found = Lookups()
    await _load_duplicates(session, msgs, found)
    await _load_contacts(session, msgs, found)
    contact_ids = sorted({c.id for c in found.contacts.values()})
    await _load_threads(session, msgs, secret, contact_ids, found)
    conversation_ids = sorted(found.conversations)
    if msgs:
        since = min(m.received_at for m in msgs)
        await load_for_routing(session, found, contact_ids, conversation_ids, since,
                               history_days=history_days, once_per=once_per)
    return found


async def load_for_routing(session: AsyncSession, found: Lookups, contact_ids: list[int],
                           conversation_ids: list[int], since: datetime, *, history_days: int,
                           once_per: frozenset[str]) -> None:
    """The contacts' recent inbound messages, the open once_per windows of the rules
    `once_per` (those that can auto-reply) and pending timers."""
    found.timers.update(await pending_timers(session, conversation_ids))
    if history_days > 0 and contact_ids:
        rows = await session.execute(
            select(Conversation.contact_id, Message.id, Message.created_at)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Conversation.contact_id.in_(contact_ids),
                   Message.direction == Direction.INBOUND.value,
                   Message.created_at >= since - timedelta(days=history_days)))
        for contact_id, message_id, created_at in rows:
            found.recent[contact_id].append((message_id, created_at))
    if once_per and (contact_ids or conversation_ids):
        # Exact keys (as the engine makes them), so the look-up is the key's index.
        keys = [f"rule:{rule}:{scope}:{i}" for rule in sorted(once_per)
                for scope, ids in (("contact", contact_ids), ("conversation", conversation_ids))
                for i in ids]
        windows = await session.execute(
            select(AutoReplyLog.once_per_key, func.max(AutoReplyLog.expires_at))
            .where(AutoReplyLog.expires_at > since, AutoReplyLog.once_per_key.in_(keys))
            .group_by(AutoReplyLog.once_per_key))
        found.opened_windows({str(key): expires for key, expires in windows})


async def _load_duplicates(session: AsyncSession, msgs: Sequence[InboundMessage],
                           found: Lookups) -> None:
    for channel, values in _by_channel((m.channel, m.provider_id) for m in msgs).items():
        rows = await session.execute(
            select(Message.provider_id, Message.id, Message.conversation_id,
                   Conversation.reference)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.channel == channel, Message.provider_id.in_(values)))
        for provider_id, message_id, conversation_id, reference in rows:
            found.duplicates[(channel, str(provider_id))] = Accepted(
                message_id=message_id, conversation_id=conversation_id, reference=reference,
                duplicate=True)


async def _load_contacts(session: AsyncSession, msgs: Sequence[InboundMessage],
                         found: Lookups) -> None:
    for channel, addresses in _by_channel((m.channel, m.sender) for m in msgs).items():
        rows = await session.execute(
            select(Identity.address, Contact)
            .join(Contact, Contact.id == Identity.contact_id)
            .where(Identity.channel == channel, Identity.address.in_(addresses)))
        for address, contact in rows:
            found.contacts[(channel, address)] = contact


async def _load_threads(session: AsyncSession, msgs: Sequence[InboundMessage], secret: bytes,
                        contact_ids: list[int], found: Lookups) -> None:
    wanted: set[int] = set()
    refs = _by_channel((m.channel, ref) for m in msgs for ref in list(m.thread.refs)[-MAX_REFS:])
    for channel, keys in refs.items():
        rows = await session.execute(
            select(Message.thread_key, func.max(Message.id), Message.conversation_id)
            .where(Message.channel == channel, Message.thread_key.in_(keys))
            .group_by(Message.thread_key, Message.conversation_id))
        for key, message_id, conversation_id in rows:
            best = found.by_thread_key.get((channel, str(key)))
            if best is None or message_id > best[0]:
                found.by_thread_key[(channel, str(key))] = (int(message_id), conversation_id)
            wanted.add(conversation_id)
    for msg in msgs:
        if msg.thread.reply_token:
            signed = verify_reply_token(msg.thread.reply_token, secret)
            if signed is not None:
                wanted.add(signed)
    references = sorted({m.thread.reference.upper() for m in msgs if m.thread.reference})
    clauses = [Conversation.id.in_(sorted(wanted))] if wanted else []
    if references:
        clauses.append(Conversation.reference.in_(references))
    if contact_ids:
        clauses.append(Conversation.id.in_(_latest_ids(msgs, contact_ids)))
    if clauses:
        chosen = await session.scalars(select(Conversation).where(or_(*clauses)))
        for conversation in chosen:
            found.conversations[conversation.id] = conversation
            if conversation.status in CONTINUABLE:
                found.by_contact[(conversation.contact_id, conversation.channel)].append(
                    conversation)


def _latest_ids(msgs: Sequence[InboundMessage], contact_ids: list[int]) -> Select[tuple[int]]:
    """The newest continuable conversations of each contact on the batch's channels."""
    ranked = (select(Conversation.id, func.row_number().over(
        partition_by=(Conversation.contact_id, Conversation.channel),
        order_by=(Conversation.last_message_at.desc(), Conversation.id.desc())).label("rank"))
        .where(Conversation.contact_id.in_(contact_ids),
               Conversation.channel.in_(sorted({m.channel for m in msgs})),
               Conversation.status.in_(CONTINUABLE))
        .subquery())
    return select(ranked.c.id).where(ranked.c.rank <= LATEST_PER_CONTACT)


def _by_channel(pairs: object) -> dict[str, list[str]]:
    grouped: dict[str, set[str]] = defaultdict(set)
    for channel, value in pairs:  # type: ignore[attr-defined]
        if value:
            grouped[channel].add(value)
    return {channel: sorted(values) for channel, values in grouped.items()}
