"""The staff API's wire format: pydantic models for every request body, query and response.

Request models forbid unknown fields and coerce nothing (`strict`), so a typo or a wrong type is a
400/422 that names the field. Query models are lax (query strings are text) but also forbid unknown
parameters. Response models are what handlers build and what `hub.web.openapi` documents, so the
OpenAPI document and the answers cannot drift apart. Field names follow CONTRACT.md exactly; fields
beyond the contract are additions, never replacements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ChannelName = Literal["email", "sms", "telegram", "webchat", "webform"]
StatusName = Literal["open", "pending", "resolved", "closed"]
PriorityName = Literal["low", "normal", "high", "urgent"]
RoleName = Literal["agent", "supervisor", "admin"]
OutboxStateName = Literal["pending", "sending", "sent", "dead"]
SpoolStateName = Literal["failed", "pending", "done", "all"]
MAX_BODY_CHARS = 100_000


class _NoNul(BaseModel):
    """Text with NUL characters is refused: PostgreSQL cannot store it, and no citizen needs it."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain NUL characters")
        return value


class RequestModel(_NoNul):
    model_config = ConfigDict(extra="forbid", strict=True)


class QueryModel(_NoNul):
    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    """Times are timezone-aware UTC and serialise as ISO 8601 with `Z`."""

    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------------


class ReplyIn(RequestModel):
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS, pattern=r"\S",
                      description="The reply text sent to the citizen.")
    channel: ChannelName | None = Field(
        default=None, description="Send on this channel instead of the conversation's own.")
    after_message_id: int | None = Field(
        default=None, ge=0,
        description="The newest message the writer had seen. When the citizen or a colleague "
                    "has written since, the reply is refused with 409 `conflict` so staff can "
                    "read first; send again without it to send anyway.")


class NoteIn(RequestModel):
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS, pattern=r"\S",
                      description="An internal note; never sent to the citizen.")


class ClaimIn(RequestModel):
    """Claim takes no fields; an empty body or `{}` is fine."""


class AssignIn(RequestModel):
    staff: str | None = Field(
        max_length=320, description="Email of the staff member to assign; null unassigns.")


class TransferIn(RequestModel):
    queue: str = Field(min_length=1, max_length=64, description="Name of an existing queue.")


class StatusIn(RequestModel):
    status: StatusName


class RetryIn(RequestModel):
    """Retry takes no fields; an empty body or `{}` is fine."""


class StaffIn(RequestModel):
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200)
    role: RoleName
    queues: list[str] = Field(default_factory=list, max_length=200)


class ConversationQuery(QueryModel):
    queue: str | None = Field(default=None, max_length=64)
    status: StatusName | None = None
    channel: ChannelName | None = None
    q: str | None = Field(default=None, min_length=1, max_length=200,
                          description="Case-insensitive text in the subject, a message body or "
                                      "one of the contact's addresses (email, phone, chat id).")
    tag: str | None = Field(default=None, max_length=64)
    priority: PriorityName | None = None
    assignee: str | None = Field(default=None, max_length=320,
                                 description="A staff email, `me` or `none` (unassigned).")
    spam: bool = Field(default=False, description="`true`: only what was marked spam (which "
                                                  "the lists leave out otherwise).")
    limit: int = Field(default=25, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=512,
                               description="`next_cursor` of the previous page; opaque.")


class CannedQuery(QueryModel):
    queue: str | None = Field(default=None, max_length=64,
                              description="Only the shared texts and those of this queue.")
    q: str | None = Field(default=None, min_length=1, max_length=100,
                          description="Case-insensitive text in the name or the body.")


class CannedIn(RequestModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS, pattern=r"\S",
                      description="The text; placeholders such as `{{ citizen_name }}` and "
                                  "`{{ reference }}` are filled per conversation.")
    queue: str | None = Field(default=None, max_length=64,
                              description="The queue it belongs to; none: every queue.")


class OutboxQuery(QueryModel):
    state: OutboxStateName = "dead"
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=512)


class SpoolQuery(QueryModel):
    state: SpoolStateName = Field(default="failed",
                                  description="`failed`: set aside after the last try.")
    limit: int = Field(default=50, ge=1, le=100)


# -- responses --------------------------------------------------------------------------------


class ErrorBody(ResponseModel):
    code: str
    message: str


class ErrorOut(ResponseModel):
    error: ErrorBody


class IdentityOut(ResponseModel):
    channel: str
    address: str


class ContactRef(ResponseModel):
    id: int
    name: str | None
    identities: list[IdentityOut]


class ConversationItem(ResponseModel):
    id: int
    reference: str
    queue: str | None
    status: str
    priority: str
    channel: str
    subject: str | None
    tags: list[str]
    contact: ContactRef
    assignee: str | None = Field(description="Email of the assigned staff member.")
    created_at: datetime
    last_message_at: datetime
    resolved_at: datetime | None = None
    spam: bool = False


class ConversationList(ResponseModel):
    items: list[ConversationItem]
    next_cursor: str | None


class AttachmentOut(ResponseModel):
    id: int
    filename: str
    content_type: str
    size: int
    url: str


class DroppedOut(ResponseModel):
    filename: str
    size: int
    content_type: str
    reason: str = Field(description="attachment_too_large | too_many_attachments")


class MessageOut(ResponseModel):
    id: int
    direction: Literal["inbound", "outbound", "note"]
    channel: str
    body: str
    created_at: datetime
    delivery_status: str | None
    delivery_error: str | None = Field(description="Why an outbound message failed, if it did.")
    author: str | None = Field(description="Staff email for replies and notes.")
    automatic: bool
    attachments: list[AttachmentOut]
    flags: list[str] = Field(default_factory=list, description=(
        "What staff should know: `malformed` (kept raw), `another_sender` (joined this "
        "conversation by our thread keys but written by someone else), `cut_to_fit` (a value "
        "longer than its column was stored cut or hashed), `attachment_too_large`, "
        "..."))
    dropped_attachments: list[DroppedOut] = Field(
        default_factory=list, description="Files the citizen sent that were not kept, and why.")


class RoutingOut(ResponseModel):
    rules_version: str | None
    trace: list[Any]
    decision: dict[str, Any] = Field(default_factory=dict)


class SatisfactionOut(ResponseModel):
    rating: int = Field(ge=1, le=5, description="1 (bad) to 5 (very good).")
    comment: str | None
    answered_at: datetime


class ConversationDetail(ConversationItem):
    messages: list[MessageOut]
    routing: RoutingOut
    satisfaction: SatisfactionOut | None = Field(
        default=None, description="The citizen's answer to the satisfaction survey sent with "
        "the resolution notice; null until they answer.")


class MessageCreated(ResponseModel):
    message_id: int


class CannedOut(ResponseModel):
    id: int
    name: str
    body: str
    queue: str | None
    created_by: str
    created_at: datetime


class CannedList(ResponseModel):
    items: list[CannedOut]
    placeholders: dict[str, str] = Field(description="What each placeholder becomes.")


class MergeIn(RequestModel):
    contact_id: int = Field(ge=1, description="The contact merged into this one, then deleted.")


class RenderedOut(ResponseModel):
    body: str = Field(description="The canned text with this conversation's values in place.")


class QueueOut(ResponseModel):
    name: str
    title: str
    open: int = Field(description="Conversations in the queue with status open.")
    pending: int
    declared: bool = Field(description="False when the queue was taken out of queues.toml.")
    strategy: str


class ContactDetail(ResponseModel):
    id: int
    name: str | None
    language: str | None
    created_at: datetime
    identities: list[IdentityOut]
    conversations: list[ConversationItem]


class StaffOut(ResponseModel):
    id: int
    email: str
    name: str
    role: str
    active: bool
    queues: list[str]
    created_at: datetime


class StaffList(ResponseModel):
    items: list[StaffOut]


class OutboxItemOut(ResponseModel):
    id: int
    message_id: int
    conversation_id: int
    channel: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime


class OutboxList(ResponseModel):
    items: list[OutboxItemOut]
    next_cursor: str | None


class SpoolItemOut(ResponseModel):
    id: int
    channel: str
    state: str
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None
    size: int | None = Field(description="Payload bytes; null once worked (the payload is "
                                         "dropped then).")


class SpoolList(ResponseModel):
    items: list[SpoolItemOut]


class SpoolDetailOut(SpoolItemOut):
    dedupe_key: str
    envelope: dict[str, Any]
    next_attempt_at: datetime | None
    message_id: int | None = Field(description="The message it became, once worked.")
    preview: str = Field(description="The payload's first bytes as text; control and format "
                                     "characters (escape sequences, bidi overrides) escaped.")
    preview_bytes: int = Field(description="How many payload bytes the preview shows.")


class RetriedOut(ResponseModel):
    kind: Literal["spool", "outbox"]
    id: int
    previous_error: str | None
    previous_attempts: int
    enqueued: bool = Field(description="Outbox only: handed to a delivery job at once.")


class RefusedChange(ResponseModel):
    at: datetime
    errors: list[str] = Field(description="`path:line: message`, as `hub rules check` prints them")


class RulesStatus(ResponseModel):
    version: str = Field(description="Hash of the live rule set (\"default\": no rules folder)")
    loaded_at: datetime | None = Field(description="When this set went live in this process")
    rules_dir: str | None
    errors: list[str] = Field(description="Errors of the folder as it is now (empty: live)")
    last_refused: RefusedChange | None = Field(
        description="The latest change that was refused; the set before it stayed live")
