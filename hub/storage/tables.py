"""The relational schema: every stored row of the hub, as SQLAlchemy 2 declarative tables.

Works on SQLite and PostgreSQL alike: JSON columns use the generic JSON type, times are stored
timezone-aware (UTC), and uniqueness that the intake relies on for dedupe is a real constraint.
Columns that hold what citizens and providers sent use the types of `hub.storage.bounded`, so the
lengths declared here are the only limits, applied to every write and look-up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    delete,
    event,
    false,
    insert,
    inspect,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    deferred,
    mapped_column,
    relationship,
)

from hub.model import utcnow
from hub.storage.bounded import BoundedString, CleanJSON, CleanText, KeyString

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# FLUSH ORDER: the unit of work orders a flush's INSERTs by relationships, not by foreign keys.
# The many-to-one links marked so exist only for that (never loaded: lazy="raise"), so that a
# batch of rows with ids given in advance (hub.storage.ids) writes parents before children,
# one multi-row statement per table, whatever order they were added in.

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite keeps no zone, so naive values read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Contact(Base):
    __tablename__ = "contacts"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str | None] = mapped_column(BoundedString(200))
    language: Mapped[str | None] = mapped_column(BoundedString(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    identities: Mapped[list[Identity]] = relationship(back_populates="contact", lazy="raise")


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("channel", "address", name="uq_identities_channel_address"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(KeyString(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The citizen said STOP (SMS) or blocked the bot: nothing is sent to this address (0005).
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    opted_out_at: Mapped[datetime | None]
    contact: Mapped[Contact] = relationship(back_populates="identities", lazy="raise")


class Queue(Base):
    __tablename__ = "queues"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(32), default="manual")
    capacity: Mapped[int | None] = mapped_column(Integer)
    calendar: Mapped[str | None] = mapped_column(String(64))
    declared: Mapped[bool] = mapped_column(Boolean, default=True)  # still in queues.toml
    # whom round_robin / least_busy deal to: "all" members, or those "online" (hub.presence)
    assign_to: Mapped[str] = mapped_column(String(8), default="all", server_default="all")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # agent | supervisor | admin
    password_hash: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    language: Mapped[str | None] = mapped_column(String(8))  # the workspace's; None: the default


class QueueMember(Base):
    __tablename__ = "queue_members"
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queues.id", ondelete="CASCADE"), primary_key=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(12))  # shown to admins to tell tokens apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_queue_status_last", "queue", "status", "last_message_at"),
        Index("ix_conversations_contact_channel", "contact_id", "channel"),
        Index("ix_conversations_assignee_last", "assignee_id", "last_message_at"),
        Index("ix_conversations_spam_last", "spam", "last_message_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    channel: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    tags: Mapped[list[str]] = mapped_column(CleanJSON, default=list)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    subject: Mapped[str | None] = mapped_column(BoundedString(998))
    language: Mapped[str | None] = mapped_column(BoundedString(8))
    spam: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_replies_sent: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_inbound_at: Mapped[datetime | None]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    _contact: Mapped[Contact] = relationship(lazy="raise")  # see FLUSH ORDER


class ConversationTag(Base):
    """The conversation's tags, one row each, so a tag filter is an index look-up; kept equal
    to `Conversation.tags` on every flush (see `_sync_tags`)."""

    __tablename__ = "conversation_tags"
    __table_args__ = (Index("ix_conversation_tags_tag", "tag", "conversation_id"),)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(BoundedString(64), primary_key=True)


@event.listens_for(Session, "before_flush")
def _sync_tags(session: Session, _context: Any, _instances: Any) -> None:
    """Whoever changes a conversation's tags (rules, staff, a migration script), the tag rows
    follow in the same flush."""
    pending: dict[Conversation, bool] = session.info.setdefault(_TAGS_PENDING, {})
    for conversation in session.new:
        if isinstance(conversation, Conversation) and conversation.tags:
            pending[conversation] = True  # nothing stored yet: nothing to delete
    for conversation in session.dirty:
        if (isinstance(conversation, Conversation)
                and inspect(conversation).attrs.tags.history.has_changes()):
            pending[conversation] = False


@event.listens_for(Session, "after_flush")
def _write_tags(session: Session, _context: Any) -> None:
    pending: dict[Conversation, bool] = session.info.pop(_TAGS_PENDING, {})
    if not pending:
        return
    connection = session.connection()
    changed = [c.id for c, is_new in pending.items() if not is_new]
    if changed:
        connection.execute(delete(ConversationTag).where(
            ConversationTag.conversation_id.in_(changed)))
    rows = [{"conversation_id": c.id, "tag": tag} for c in pending
            for tag in dict.fromkeys(str(t) for t in c.tags or ())]
    if rows:
        connection.execute(insert(ConversationTag), rows)


_TAGS_PENDING = "hub.pending_tags"


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "provider_id", name="uq_messages_channel_provider_id"),
        Index("ix_messages_thread_key", "channel", "thread_key"),
        Index("ix_messages_conversation_created", "conversation_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(KeyString(512))
    thread_key: Mapped[str | None] = mapped_column(KeyString(512))
    sender: Mapped[str | None] = mapped_column(KeyString(320))
    recipient: Mapped[str | None] = mapped_column(KeyString(320))
    subject: Mapped[str | None] = mapped_column(BoundedString(998))
    body: Mapped[str] = mapped_column(CleanText, default="")
    full_text: Mapped[str | None] = deferred(mapped_column(CleanText))
    html: Mapped[str | None] = deferred(mapped_column(CleanText))  # sanitised with nh3
    raw: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    flags: Mapped[list[str]] = mapped_column(CleanJSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(CleanJSON, default=dict)
    language: Mapped[str | None] = mapped_column(BoundedString(8))
    thread_rule: Mapped[str | None] = mapped_column(BoundedString(24))
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id", ondelete="SET NULL"))
    delivery_status: Mapped[str | None] = mapped_column(String(16))
    delivery_error: Mapped[str | None] = mapped_column(CleanText)
    received_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    _conversation: Mapped[Conversation] = relationship(lazy="raise")  # see FLUSH ORDER


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(BoundedString(255))
    content_type: Mapped[str] = mapped_column(BoundedString(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_id: Mapped[str | None] = mapped_column(BoundedString(255))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    _message: Mapped[Message] = relationship(lazy="raise")  # see FLUSH ORDER


class OutboxItem(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(CleanText)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    _message: Mapped[Message] = relationship(lazy="raise")  # see FLUSH ORDER


class DeliveryEvent(Base):
    __tablename__ = "delivery_events"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str | None] = mapped_column(KeyString(512))
    detail: Mapped[str | None] = mapped_column(CleanText)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    _message: Mapped[Message] = relationship(lazy="raise")  # see FLUSH ORDER


class RoutingDecisionRow(Base):
    __tablename__ = "routing_decisions"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    rules_version: Mapped[str] = mapped_column(String(80))
    decision: Mapped[dict[str, Any]] = mapped_column(CleanJSON, default=dict)
    trace: Mapped[list[Any]] = mapped_column(CleanJSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    _message: Mapped[Message] = relationship(lazy="raise")  # see FLUSH ORDER
    _conversation: Mapped[Conversation] = relationship(lazy="raise")


class ConversationTimer(Base):
    __tablename__ = "conversation_timers"
    __table_args__ = (Index("ix_timers_state_due", "state", "due_at"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    rule_id: Mapped[str] = mapped_column(String(120))
    step: Mapped[str] = mapped_column(String(120))
    due_at: Mapped[datetime]
    actions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|fired|cancelled
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fired_at: Mapped[datetime | None]
    _conversation: Mapped[Conversation] = relationship(lazy="raise")  # see FLUSH ORDER


class AutoReplyLog(Base):
    __tablename__ = "auto_reply_log"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    once_per_key: Mapped[str] = mapped_column(String(200), index=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    _conversation: Mapped[Conversation] = relationship(lazy="raise")  # see FLUSH ORDER


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_target", "target_type", "target_id"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    actor: Mapped[str] = mapped_column(String(320))  # staff email, "rules", "system", "cli"
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(CleanJSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SpoolEntry(Base):
    """An inbound item committed before its acknowledgment, worked into the intake behind it."""

    __tablename__ = "inbound_spool"
    __table_args__ = (
        UniqueConstraint("channel", "dedupe_key", name="uq_inbound_spool_channel_dedupe_key"),
        Index("ix_inbound_spool_state_id", "state", "id"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(KeyString(1024))
    envelope: Mapped[dict[str, Any]] = mapped_column(CleanJSON, default=dict)
    payload: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))  # dropped once worked
    state: Mapped[str] = mapped_column(String(8), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(BoundedString(500))
    message_id: Mapped[int | None] = mapped_column(Id)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]


class WebSession(Base):
    """A signed-in browser of the staff workspace (0006). The cookie holds a random token; only
    its SHA-256 is stored, so a copy of the database opens no session. Revoked by deleting it
    (logout, a password change)."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))  # sent back with every change
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class LoginFailure(Base):
    """Wrong passwords given for an email (known or not) since its last good login (0006):
    the lockout of `[security] max_login_attempts` counts them."""

    __tablename__ = "login_failures"
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Open311Key(Base):
    """An Open311 client's API key (0007, `hub apikey create NAME`): only its SHA-256 is stored;
    the key itself is shown once. POST /open311/v2/requests.json needs a live one."""

    __tablename__ = "open311_keys"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)  # who holds it, e.g. "city-app"
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(12))  # shown to admins to tell keys apart
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class CannedResponse(Base):
    """A text staff insert into replies (0008), shared (queue NULL) or for one queue; its
    placeholders are filled per conversation (hub.canned)."""

    __tablename__ = "canned_responses"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    body: Mapped[str] = mapped_column(CleanText)
    queue: Mapped[str | None] = mapped_column(String(64), index=True)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Survey(Base):
    """A conversation's satisfaction survey (0009, hub.survey): one per conversation, made when
    its resolution notice is queued. The token is the unguessable `/survey/{token}` link; the
    answer (a rating 1-5 and an optional comment) is stored once, from the page or, on a phone
    channel, from a reply that is just the digit."""

    __tablename__ = "surveys"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), unique=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))  # where the notice with the link went
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)  # the latest resolution notice
    rating: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(CleanText)
    answered_at: Mapped[datetime | None]
    answered_via: Mapped[str | None] = mapped_column(String(16))  # "web" or the reply's channel


class QueueMute(Base):
    """A staff member's muted queue (0010, hub.staff_notify): rule notifications about that
    queue's conversations are neither emailed to nor shown to them."""

    __tablename__ = "queue_mutes"
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"),
                                          primary_key=True)
    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
