"""Conversations for staff: who may see which, and the actions on one (reply, note, claim,
assign, transfer, status, priority, tags). The one place these rules live: the staff API calls
it, and so will the workspace and the citizen pages. It knows nothing of HTTP.

Visibility: an agent sees the conversations of the queues they belong to, a supervisor or admin
sees all; anything else is reported exactly like a row that does not exist (NotFound), so an id
reveals nothing. Each action runs in one transaction with its audit row; only after the commit
are outbox ids handed to the jobs and events published, so nobody hears of a change that did
not happen. Refusals are domain errors (NotFound, Conflict, Invalid, each with a `code`) that
callers turn into their own answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Row, Select, and_, exists, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.events import Event
from hub.model import PRIORITY_RANK, ConversationStatus, Direction, OutboundAttachment, utcnow
from hub.outbound import (
    NoAddressOnChannel,
    OptedOut,
    StoredFile,
    enqueue_outbound,
    reply_channel,
)
from hub.queues import member_queue_names
from hub.routing.timers import pending_due_before
from hub.search import text_condition
from hub.staff import ADMIN, ADMINS, AGENT, ROLES, SUPERVISOR, SUPERVISORS, find_staff
from hub.storage.db import Database
from hub.storage.tables import (
    Attachment,
    Contact,
    Conversation,
    ConversationTag,
    Message,
    Queue,
    QueueMember,
    Staff,
)

__all__ = ["ADMIN", "ADMINS", "AGENT", "ROLES", "SUPERVISOR", "SUPERVISORS"]

Publish = Callable[[Event], None]
SubmitDelivery = Callable[[Sequence[int]], None]
Detail = dict[str, Any]
Change = Callable[[AsyncSession, Conversation], Awaitable[Detail | None]]
_UNRESOLVED = (ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)


class ServiceError(Exception):
    """A refused request: `code` names the reason for programs, the message for people."""

    code = "refused"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code


class NotFound(ServiceError):
    """No such row, or one the caller may not see: the two are never told apart."""

    code = "not_found"

    def __init__(self, what: str = "conversation") -> None:
        super().__init__(f"{what} not found")


class Conflict(ServiceError):
    code = "conflict"


class Invalid(ServiceError):
    """A value the action cannot take; the message starts with the field's name."""

    code = "invalid"


# -- visibility -------------------------------------------------------------------------------


def sees_all(staff: Staff) -> bool:
    return staff.role in SUPERVISORS


async def visible_queues(session: AsyncSession, staff: Staff) -> set[str] | None:
    """The queues `staff` sees; None means every queue."""
    return None if sees_all(staff) else await member_queue_names(session, staff)


async def visible_filter(session: AsyncSession, staff: Staff) -> ColumnElement[bool]:
    """A WHERE clause on Conversation keeping the rows `staff` may see. The queues are a
    subquery, not a list read first: one round trip less, and one statement text for all."""
    if sees_all(staff):
        return true()
    return Conversation.queue.in_(
        select(Queue.name).join(QueueMember, QueueMember.queue_id == Queue.id)
        .where(QueueMember.staff_id == staff.id))


async def may_work(session: AsyncSession, staff: Staff, queue: str | None) -> bool:
    """Whether `staff` may hold conversations of `queue` (as assignee)."""
    return sees_all(staff) or (queue is not None
                               and queue in await member_queue_names(session, staff))


async def queues_for(session: AsyncSession, staff: Staff) -> list[Queue]:
    query = select(Queue).order_by(Queue.name)
    visible = await visible_queues(session, staff)
    if visible is not None:
        query = query.where(Queue.name.in_(sorted(visible)))
    return list(await session.scalars(query))


async def conversation_for(session: AsyncSession, staff: Staff, conversation_id: int, *,
                           for_update: bool = False) -> Conversation:
    query = select(Conversation).where(Conversation.id == conversation_id,
                                       await visible_filter(session, staff))
    if for_update:
        query = query.with_for_update()
    conversation = await session.scalar(query)
    if conversation is None:
        raise NotFound()
    return conversation


async def contact_for(session: AsyncSession, staff: Staff,
                      contact_id: int) -> tuple[Contact, list[Conversation]]:
    """A contact and its conversations `staff` may see, newest activity first. An agent sees a
    contact only through a conversation of their queues."""
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound("contact")
    conversations = list(await session.scalars(
        select(Conversation).where(Conversation.contact_id == contact.id,
                                   await visible_filter(session, staff))
        .order_by(Conversation.last_message_at.desc(), Conversation.id.desc())))
    if not conversations and not sees_all(staff):
        raise NotFound("contact")
    return contact, conversations


async def attachment_for(session: AsyncSession, staff: Staff, attachment_id: int) -> Attachment:
    attachment = await session.scalar(
        select(Attachment).join(Message, Message.id == Attachment.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Attachment.id == attachment_id, await visible_filter(session, staff)))
    if attachment is None:
        raise NotFound("attachment")
    return attachment


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    queue: str | None = None
    status: str | None = None
    channel: str | None = None
    text: str | None = None  # case-insensitive: subject, message bodies, the contact's addresses
    tag: str | None = None
    priority: str | None = None
    assignee: str | None = None  # a staff email, "me" or "none"
    spam: bool = False  # spam is kept apart: listed only when asked for
    after: tuple[datetime, int] | None = None  # (last_message_at, id) of the previous page's end
    sla_due_before: datetime | None = None  # only those with a pending SLA timer due by then


async def list_conversations(session: AsyncSession, staff: Staff, where: ConversationFilter,
                             limit: int) -> list[Conversation]:
    """Visible conversations, newest activity first (last_message_at, then id, descending)."""
    query = await _listed(session, select(Conversation), staff, where)
    return list(await session.scalars(query.limit(limit)))


# What a list item shows, read as plain rows: no entity is built, and the contact's name and the
# assignee's email come in the same query.
ITEM_COLUMNS = (
    Conversation.id, Conversation.reference, Conversation.queue, Conversation.status,
    Conversation.priority, Conversation.channel, Conversation.subject, Conversation.tags,
    Conversation.contact_id, Conversation.created_at, Conversation.last_message_at,
    Conversation.resolved_at, Conversation.spam, Contact.name.label("contact_name"),
    Staff.email.label("assignee_email"),
)


_ITEMS: Select[*tuple[Any, ...]] = (
    select(*ITEM_COLUMNS).join(Contact, Contact.id == Conversation.contact_id)
    .outerjoin(Staff, Staff.id == Conversation.assignee_id))


async def list_items(session: AsyncSession, staff: Staff, where: ConversationFilter,
                     limit: int) -> Sequence[Row[Any]]:
    """What list_conversations finds, as rows of ITEM_COLUMNS."""
    query = await _listed(session, _ITEMS, staff, where)
    return (await session.execute(query.limit(limit))).all()


async def item_for(session: AsyncSession, staff: Staff, conversation_id: int) -> Row[Any]:
    """What conversation_for finds, as a row of ITEM_COLUMNS."""
    row = (await session.execute(_ITEMS.where(
        Conversation.id == conversation_id, await visible_filter(session, staff)))).first()
    if row is None:
        raise NotFound()
    return row


async def _listed(session: AsyncSession, query: Select[*tuple[Any, ...]], staff: Staff,
                  where: ConversationFilter) -> Select[*tuple[Any, ...]]:
    query = await _filtered(session, query.where(await visible_filter(session, staff)), where)
    query = await _assigned(session, query, staff, where.assignee)
    return query.order_by(Conversation.last_message_at.desc(), Conversation.id.desc())


async def _assigned(session: AsyncSession, query: Any, staff: Staff, who: str | None) -> Any:
    if who is None:
        return query
    if who == "none":
        return query.where(Conversation.assignee_id.is_(None))
    if who == "me":
        return query.where(Conversation.assignee_id == staff.id)
    found = await find_staff(session, who)
    return query.where(Conversation.assignee_id == (found.id if found is not None else -1))


async def _filtered(session: AsyncSession, query: Any, where: ConversationFilter) -> Any:
    query = query.where(Conversation.spam.is_(where.spam))
    if where.tag is not None:
        query = query.where(exists().where(ConversationTag.conversation_id == Conversation.id,
                                           ConversationTag.tag == where.tag))
    if where.priority is not None:
        query = query.where(Conversation.priority == where.priority)
    if where.queue is not None:
        query = query.where(Conversation.queue == where.queue)
    if where.status is not None:
        query = query.where(Conversation.status == where.status)
    if where.channel is not None:
        query = query.where(Conversation.channel == where.channel)
    if where.text is not None:
        query = query.where(await text_condition(session, where.text))
    if where.sla_due_before is not None:
        query = query.where(pending_due_before(where.sla_due_before))
    if where.after is not None:
        at, last_id = where.after
        # The first condition says nothing new, but it is one the index can seek to: without
        # it the planner reads from the newest row and throws away every page already seen.
        query = query.where(Conversation.last_message_at <= at,
                            or_(Conversation.last_message_at < at,
                                and_(Conversation.last_message_at == at,
                                     Conversation.id < last_id)))
    return query


# -- actions ----------------------------------------------------------------------------------


def _updated(conversation: Conversation, action: str, actor: Staff, detail: Detail) -> Event:
    return Event("conversation.updated", conversation.id, conversation.queue,
                 {"action": action, "actor": actor.email, **detail})


async def _act(db: Database, publish: Publish, actor: Staff, conversation_id: int, action: str,
               change: Change) -> Conversation:
    """Run `change` on a visible conversation in one transaction with its audit row, then
    publish. A change that returns None changed nothing: no audit row, no event."""
    async with db.transaction() as session:
        conversation = await conversation_for(session, actor, conversation_id, for_update=True)
        detail = await change(session, conversation)
        if detail is not None:
            audit.record(session, actor.email, f"conversation.{action}", "conversation",
                         conversation.id, **detail)
    if detail is not None:
        publish(_updated(conversation, action, actor, detail))
    return conversation


class Channels(Protocol):
    """The configured channels (the adapter registry): which exist, and what each can carry."""

    def __contains__(self, channel: object) -> bool: ...

    def too_long(self, channel: str, body: str) -> str | None: ...

    def carries_attachments(self, channel: str) -> bool: ...


class Blobs(Protocol):
    """Where attachment contents are kept (hub.storage.blobs.BlobStore): content-addressed."""

    async def put(self, data: bytes) -> str: ...


async def reply(db: Database, actor: Staff, conversation_id: int, body: str, *,
                channel: str | None = None, channels: Channels,
                after_message_id: int | None = None,
                attachments: Sequence[OutboundAttachment] = (), blobs: Blobs | None = None,
                submit_delivery: SubmitDelivery, publish: Publish) -> Message:
    """Queue a reply to the citizen on `channel` (default: the conversation's own), which must
    be among the configured `channels`, able to carry `body` (and `attachments`, already
    checked by hub.reply_files, kept in `blobs`), and where the contact must have an address
    that has not opted out. With `after_message_id` (the newest message the writer had seen),
    a reply is held with Conflict when the citizen or a colleague wrote since.
    """
    async with db.transaction() as session:
        conversation = await conversation_for(session, actor, conversation_id, for_update=True)
        if after_message_id is not None:
            await _refuse_if_newer(session, conversation.id, after_message_id)
        try:
            channel, recipient = await reply_channel(session, conversation, channel)
            if channel not in channels:
                raise Invalid(f"channel: {channel} is not configured", "no_channel")
            if why := channels.too_long(channel, body):
                raise Invalid(f"body: {why}", "too_long")
            stored = await _stored_files(channels, channel, attachments, blobs)
            message, outbox_id = await enqueue_outbound(session, conversation, body,
                                                      staff_id=actor.id, channel=channel,
                                                      recipient=recipient, attachments=stored)
        except OptedOut as exc:
            raise Invalid(f"channel: {exc}", "opted_out") from None
        except NoAddressOnChannel as exc:
            raise Invalid(f"channel: {exc}", "no_address") from None
        audit.record(session, actor.email, "conversation.reply", "conversation",
                     conversation.id, message_id=message.id, channel=channel,
                     **({"files": len(stored)} if stored else {}))
    submit_delivery([outbox_id])
    publish(Event("message.outbound", conversation.id, conversation.queue,
                  {"message_id": message.id, "actor": actor.email}))
    publish(_updated(conversation, "reply", actor, {"message_id": message.id}))
    return message


async def _stored_files(channels: Channels, channel: str,
                        attachments: Sequence[OutboundAttachment],
                        blobs: Blobs | None) -> list[StoredFile]:
    """The files' blobs, written only once the reply is sure to be queued (a refused reply
    leaves nothing behind); refused when the channel cannot carry files."""
    if not attachments:
        return []
    if not channels.carries_attachments(channel):
        raise Invalid(f"attachment: files cannot be sent on {channel}; send the reply on "
                      "another channel or without them", "attachments_not_supported")
    if blobs is None:
        raise ValueError("reply: attachments need a blob store")
    return [StoredFile(a.filename, a.content_type, len(a.data), await blobs.put(a.data))
            for a in attachments]


async def _refuse_if_newer(session: AsyncSession, conversation_id: int, seen: int) -> None:
    newer = await session.scalar(
        select(func.count()).select_from(Message)
        .where(Message.conversation_id == conversation_id, Message.id > seen,
               or_(Message.direction == Direction.INBOUND.value,
                   and_(Message.direction == Direction.OUTBOUND.value,
                        Message.automatic.is_(False)))))
    if newer:
        raise Conflict(f"{newer} new message(s) arrived in this conversation since message "
                       f"{seen}; read them first, or send again to send anyway")


async def note(db: Database, actor: Staff, conversation_id: int, body: str, *,
               publish: Publish) -> Message:
    """An internal note: stored with the conversation, never sent to the citizen."""
    async with db.transaction() as session:
        conversation = await conversation_for(session, actor, conversation_id, for_update=True)
        message = Message(conversation_id=conversation.id, direction=Direction.NOTE.value,
                          channel=conversation.channel, body=body, staff_id=actor.id,
                          flags=[], meta={}, created_at=utcnow())
        session.add(message)
        await session.flush()
        audit.record(session, actor.email, "conversation.note", "conversation",
                     conversation.id, message_id=message.id)
    publish(_updated(conversation, "note", actor, {"message_id": message.id}))
    return message


async def claim(db: Database, actor: Staff, conversation_id: int, *,
                publish: Publish) -> Conversation:
    """Assign to `actor`; Conflict when someone else holds it (only assign takes it away)."""

    async def change(session: AsyncSession, conversation: Conversation) -> Detail | None:
        if conversation.assignee_id == actor.id:
            return None
        if conversation.assignee_id is not None:
            raise Conflict("the conversation is assigned to someone else; "
                           "a supervisor can reassign it")
        conversation.assignee_id = actor.id
        return {"assignee": actor.email}

    return await _act(db, publish, actor, conversation_id, "claim", change)


async def assign(db: Database, actor: Staff, conversation_id: int, email: str | None, *,
                 publish: Publish) -> Conversation:
    """Assign to the active staff member with `email`, who must be able to work the queue;
    None unassigns."""

    async def change(session: AsyncSession, conversation: Conversation) -> Detail | None:
        staff = await _assignee(session, email, conversation.queue)
        new_id = staff.id if staff is not None else None
        if conversation.assignee_id == new_id:
            return None
        conversation.assignee_id = new_id
        return {"assignee": staff.email if staff is not None else None}

    return await _act(db, publish, actor, conversation_id, "assign", change)


async def _assignee(session: AsyncSession, email: str | None, queue: str | None) -> Staff | None:
    if email is None:
        return None
    staff = await find_staff(session, email)
    if staff is None or not staff.active:
        raise Invalid("staff: no active staff member has that email", "unknown_staff")
    if not await may_work(session, staff, queue):
        raise Invalid(f"staff: {staff.email} is not a member of queue {queue}", "not_a_member")
    return staff


async def transfer(db: Database, actor: Staff, conversation_id: int, queue: str, *,
                   publish: Publish) -> Conversation:
    """Move to an existing queue; an assignee who cannot work the new queue is unassigned. An
    agent may move a conversation out of their own queues, and then no longer sees it."""

    async def change(session: AsyncSession, conversation: Conversation) -> Detail | None:
        if await session.scalar(select(Queue.id).where(Queue.name == queue)) is None:
            raise Invalid(f"queue: there is no queue {queue!r}", "unknown_queue")
        if conversation.queue == queue:
            return None
        old, conversation.queue = conversation.queue, queue
        if conversation.assignee_id is not None:
            assignee = await session.get_one(Staff, conversation.assignee_id)
            if not await may_work(session, assignee, queue):
                conversation.assignee_id = None
        return {"from": old, "to": queue}

    return await _act(db, publish, actor, conversation_id, "transfer", change)


async def set_priority(db: Database, actor: Staff, conversation_id: int, priority: str, *,
                       publish: Publish) -> Conversation:
    """One of hub.model.Priority."""
    if priority not in PRIORITY_RANK:
        raise Invalid(f"priority: {priority!r} is not a priority", "unknown_priority")

    async def change(session: AsyncSession, conversation: Conversation) -> Detail | None:
        if conversation.priority == priority:
            return None
        old, conversation.priority = conversation.priority, priority
        return {"from": old, "to": priority}

    return await _act(db, publish, actor, conversation_id, "priority", change)


MAX_TAG = 64


def _clean_tags(tags: Sequence[str]) -> list[str]:
    cleaned = [t.strip() for t in tags if t.strip()]
    if any(len(t) > MAX_TAG for t in cleaned):
        raise Invalid(f"tags: a tag has at most {MAX_TAG} characters", "tag_too_long")
    return cleaned


async def set_tags(db: Database, actor: Staff, conversation_id: int, *,
                   add: Sequence[str] = (), remove: Sequence[str] = (),
                   publish: Publish) -> Conversation:
    """Add and remove tags (blank ones ignored, the order of the others kept)."""
    adding, removing = _clean_tags(add), set(_clean_tags(remove))

    async def change(session: AsyncSession, conversation: Conversation) -> Detail | None:
        old = list(conversation.tags or [])
        new = [t for t in old if t not in removing]
        new += [t for t in dict.fromkeys(adding) if t not in new]
        if new == old:
            return None
        conversation.tags = new
        return {"added": [t for t in new if t not in old],
                "removed": [t for t in old if t not in new]}

    return await _act(db, publish, actor, conversation_id, "tags", change)


Reroute = Callable[[AsyncSession, Conversation], Awaitable[list[int]]]


async def not_spam(db: Database, actor: Staff, conversation_id: int, *, reroute: Reroute,
                   publish: Publish, submit_delivery: SubmitDelivery) -> Conversation:
    """Undo a spam verdict: the conversation goes through the rules again as if it had just
    arrived (queue, tags, timers, the acknowledgment the citizen never got)."""
    async with db.transaction() as session:
        conversation = await conversation_for(session, actor, conversation_id, for_update=True)
        if not conversation.spam:
            raise Conflict("the conversation is not marked as spam")
        outbox_ids = await reroute(session, conversation)
        audit.record(session, actor.email, "conversation.not_spam", "conversation",
                     conversation.id, queue=conversation.queue)
    if outbox_ids:
        submit_delivery(outbox_ids)
    publish(_updated(conversation, "not_spam", actor, {"queue": conversation.queue}))
    return conversation


# The status notice (hub.notices.StatusNotices): queued in the change's transaction for the
# conversation now in its new status, given the old one; returns the outbox ids.
Notify = Callable[[AsyncSession, Conversation, str], Awaitable[list[int]]]


async def set_status(db: Database, actor: Staff, conversation_id: int, status: str, *,
                     publish: Publish, notify: Notify | None = None,
                     submit_delivery: SubmitDelivery | None = None) -> Conversation:
    """`resolved` stamps resolved_at; going back to open or pending clears it. With `notify`,
    the citizen is told of the change (once: an unchanged status changes nothing)."""
    if status not in {s.value for s in ConversationStatus}:
        raise Invalid(f"status: {status!r} is not a conversation status", "unknown_status")
    outbox_ids: list[int] = []

    async def change(session: AsyncSession, conversation: Conversation) -> Detail | None:
        if conversation.status == status:
            return None
        old, conversation.status = conversation.status, status
        if status == ConversationStatus.RESOLVED.value:
            conversation.resolved_at = utcnow()
        elif status in _UNRESOLVED:
            conversation.resolved_at = None
        if notify is not None:
            outbox_ids.extend(await notify(session, conversation, old))
        return {"from": old, "to": status}

    conversation = await _act(db, publish, actor, conversation_id, "status", change)
    if outbox_ids and submit_delivery is not None:
        submit_delivery(outbox_ids)
    return conversation
