"""The shared conversation vocabulary: what adapters hand to the core and what the core hands back.

These are plain value types with no storage or provider knowledge. Stored rows live in
`hub.storage.tables`; these types cross the adapter boundary and the job boundary.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"
    WEBFORM = "webform"


CHANNELS: tuple[str, ...] = tuple(c.value for c in Channel)


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NOTE = "note"


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PRIORITY_RANK = {p.value: i for i, p in enumerate(Priority)}


class OutboxState(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SENDING = "sending"  # a worker holds it
    SENT = "sent"
    DEAD = "dead"  # permanent failure or too many attempts: staff must look


class DeliveryStatus(enum.StrEnum):
    """Forward-only: a status never moves to an earlier rank (see hub.status)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    BOUNCED = "bounced"
    UNDELIVERED = "undelivered"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class InboundAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None  # inline images in HTML mail
    inline: bool = False


@dataclass(frozen=True, slots=True)
class ThreadHints:
    """What an adapter knows about where a message belongs; the intake decides.

    The intake tries, in order: `refs` (provider thread keys we stored or sent, e.g. email
    Message-IDs), `reply_token` (a signed token we issued; verified by the intake), `reference`
    (a citizen-facing code, accepted only when the sender already takes part in that
    conversation), then, if `continue_latest`, the sender's latest live conversation on the
    channel (chat and SMS have no subject to start a new thread with).
    """

    refs: tuple[str, ...] = ()
    reply_token: str | None = None
    reference: str | None = None
    continue_latest: bool = False


@dataclass(frozen=True, slots=True)
class DroppedAttachment:
    """A file the channel received but did not keep; staff and the citizen are told why."""

    filename: str
    size: int
    content_type: str
    reason: str  # "attachment_too_large" | "too_many_attachments"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's word on one of our sent messages: a bounce, a status callback."""

    status: str  # a DeliveryStatus value ("bounced", "delivered", ...) or "delayed"
    refers_to: tuple[str, ...]  # our provider ids / thread keys the report is about
    detail: str | None = None  # the provider's diagnostic, for staff
    recipient: str | None = None


class StoredMessage(Protocol):
    """A message row as the intake and the rules refer to it: read from the database, or being
    written in this transaction (hub.intake writes inbound rows without an ORM object)."""

    @property
    def id(self) -> int: ...

    @property
    def automatic(self) -> bool: ...

    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    """A detector's guess at a message's language, made off the intake's loop (in the parse
    process), among the languages the rule set knew then: only a match of those is used."""

    codes: frozenset[str]
    code: str | None  # None: too short or unsure


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from a citizen, normalised by its channel adapter."""

    channel: str
    provider_id: str  # the provider's own id: the dedupe key, unique per channel
    sender: str  # normalised identity: lower-cased email, E.164 phone, chat id, visitor id
    text: str = ""  # the new text (quotes and signatures stripped where the channel has them)
    sender_name: str | None = None
    recipient: str | None = None  # the address/number it was sent to
    subject: str | None = None
    full_text: str | None = None  # the whole text part, quotes included
    html: str | None = None  # as received; the intake sanitises it before storage
    attachments: tuple[InboundAttachment, ...] = ()
    thread: ThreadHints = field(default_factory=ThreadHints)
    thread_key: str | None = None  # this message's own key for later refs (email Message-ID)
    received_at: datetime = field(default_factory=utcnow)
    raw: bytes | None = None
    automatic: bool = False  # auto-submitted, bulk, bounce: stored, never answered automatically
    flags: tuple[str, ...] = ()  # e.g. "malformed", "oversized_attachment_dropped"
    language: str | None = None  # ISO 639-1 when the channel or the citizen told us
    extra_identities: tuple[tuple[str, str], ...] = ()  # (channel, address) the citizen also gave
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able channel details, for staff
    inbox_queue: str | None = None  # the queue of the address it was sent to, if it has one
    delivery_report: DeliveryReport | None = None  # a bounce or receipt of our own message
    dropped_attachments: tuple[DroppedAttachment, ...] = ()
    language_guess: LanguageGuess | None = None  # when `language` is None (hub.routing.language)


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """What a channel received, as received: committed before the channel acknowledges it."""

    channel: str
    dedupe_key: str  # a resend of the same item has the same key (e.g. Message-ID + sender)
    payload: bytes
    envelope: dict[str, Any] = field(default_factory=dict)  # JSON-able transport details
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class SpoolReceipt:
    """The spool's answer, given only after the item is committed."""

    spool_id: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """The intake's answer to an adapter, given only after the message is committed."""

    message_id: int
    conversation_id: int
    reference: str
    duplicate: bool = False
    new_conversation: bool = False


@dataclass(frozen=True, slots=True)
class OutboundAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What a delivery job hands to an adapter's `send`: everything needed, no storage handles."""

    message_id: int
    conversation_id: int
    channel: str
    to: str
    body: str
    idempotency_key: str
    reference: str
    subject: str | None = None
    html: str | None = None
    attachments: tuple[OutboundAttachment, ...] = ()
    automatic: bool = False  # acknowledgments and auto-replies
    reply_token: str | None = None  # signed conversation token for threading
    in_reply_to: str | None = None  # provider thread key of the citizen's last message
    references: tuple[str, ...] = ()
    sender_name: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str  # provider's id for status callbacks (Twilio SID, email Message-ID, ...)
    status: str = DeliveryStatus.SENT.value
    thread_key: str | None = None  # key a citizen's reply will refer to (email Message-ID)
