"""A visitor's `message` frame (with the pre-chat profile, and files from the HTTP fallback) ->
one `InboundMessage` for the intake.

The provider id is `<visitor id>:<client_id>`, so a resend of the same client_id after a
reconnect is the same message to the intake's dedupe. The visitor id is the sender (channel
`webchat`); an email or phone from the pre-chat form becomes another identity of the contact,
so the conversation can continue there; a topic (a form id) routes like that form's own
submissions (its queue is the message's default queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.identities import InvalidAddress, normalize_email, normalize_phone
from hub.model import Channel, InboundAttachment, InboundMessage, ThreadHints, utcnow

from .protocol import BAD_REQUEST, N_, ChatMessage, Profile, ProtocolError

CHANNEL = Channel.WEBCHAT.value
CLIENT_ID_META = "client_id"
LEAVE_MESSAGE_META = "leave_message"
BAD_ADDRESS = N_("Please check the email address or phone number you gave.")


@dataclass(frozen=True, slots=True)
class Topic:
    """The form a visitor picked on the pre-chat form, as the intake needs it."""

    id: str
    queue: str
    title: str


def provider_id(visitor: str, client_id: str) -> str:
    return f"{visitor}:{client_id}"


def to_inbound(visitor: str, message: ChatMessage, *, language: str, topic: Topic | None = None,
               phone_region: str | None = None,
               attachments: tuple[InboundAttachment, ...] = (),
               received_at: datetime | None = None) -> InboundMessage:
    profile = message.profile or Profile()
    meta: dict[str, Any] = {CLIENT_ID_META: message.client_id}
    if profile.consent:
        meta["consent"] = True
    if profile.leave_message:
        meta[LEAVE_MESSAGE_META] = True
    if topic is not None:
        meta["topic"] = topic.id
    return InboundMessage(
        channel=CHANNEL,
        provider_id=provider_id(visitor, message.client_id),
        sender=visitor,
        sender_name=profile.name,
        text=message.body,
        subject=topic.title if topic is not None else None,
        attachments=attachments,
        # The visitor's live conversation, whatever their message: a chat has no subject.
        thread=ThreadHints(continue_latest=True),
        language=language,
        extra_identities=_identities(profile, message.client_id, phone_region),
        inbox_queue=topic.queue if topic is not None else None,
        meta=meta,
        received_at=received_at or utcnow(),
    )


def _identities(profile: Profile, client_id: str,
                region: str | None) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    try:
        if profile.email:
            found.append(("email", normalize_email(profile.email)))
        if profile.phone:
            found.append(("sms", normalize_phone(profile.phone, region)))
    except InvalidAddress:
        raise ProtocolError(BAD_REQUEST, client_id=client_id, text=BAD_ADDRESS) from None
    return tuple(found)
