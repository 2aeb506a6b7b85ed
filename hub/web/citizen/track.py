"""`/track/{reference}`: where a request stands, for the citizen who holds its reference.

The page shows the status in plain words and the public timeline: the citizen's own messages and
what was sent to them. Never internal notes, routing traces, staff names nor the citizen's own
addresses; the queue only by the title it has for citizens (queues.toml `titles`, in the
citizen's language), and not at all when it has none. While the request can still be
continued (open, pending, or resolved within `[hub] reopen_window_days`) a web-form request has
a box to add a message, which becomes an inbound `webform` message on that conversation
(threaded by its reference, deduplicated by a token issued with the page). A wrong reference
is a polite 404 that tells nothing; every tracking request counts against the client address's
rate.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiohttp import web
from babel.dates import format_timedelta
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.forms.schema import FormField
from hub.forms.submit import TOKEN_RE
from hub.forms.validate import FieldError, Upload, check_files
from hub.lookups import LIVE_STATUSES
from hub.model import (
    Channel,
    ConversationStatus,
    Direction,
    InboundAttachment,
    InboundMessage,
    ThreadHints,
    utcnow,
)
from hub.routing.schema import expected_minutes
from hub.storage.tables import Attachment, Conversation, Message
from hub.tokens import REFERENCE_ALPHABET, REFERENCE_LENGTH
from hub.web.citizen import i18n
from hub.web.citizen.body import read_body
from hub.web.citizen.files import file_url
from hub.web.citizen.guard import check_csrf, rate_limit
from hub.web.citizen.i18n import N_
from hub.web.citizen.pages import with_csrf
from hub.web.keys import HUB_KEY

log = logging.getLogger(__name__)
MESSAGE_MAX = 5000
PHOTOS = FormField(id="photo", type="file", max_size="8MB", max_files=3,
                   label={"en": "Photos", "es": "Fotos"},
                   content_types=["image/jpeg", "image/png", "image/webp", "image/heic"])
MESSAGE_TOKEN = "message_token"  # noqa: S105 - a field name, not a secret
STATUS_WORDS = {
    ConversationStatus.OPEN.value: N_("Received: we are working on it"),
    ConversationStatus.PENDING.value: N_("Waiting for more information"),
    ConversationStatus.RESOLVED.value: N_("Resolved"),
    ConversationStatus.CLOSED.value: N_("Closed"),
}
STATUS_NOTES = {
    ConversationStatus.OPEN.value: N_("We will reply here and on the contact details you gave us."),
    ConversationStatus.PENDING.value: N_("We may have asked you a question. Add a message below."),
    ConversationStatus.RESOLVED.value: N_("If something is still wrong, add a message below."),
    ConversationStatus.CLOSED.value: N_("This request is closed. To report something new, start "
                                     "a new request."),
}


def _reference(request: web.Request) -> str:
    reference = request.match_info["reference"].upper()
    if len(reference) != REFERENCE_LENGTH or any(c not in REFERENCE_ALPHABET for c in reference):
        raise web.HTTPNotFound()
    return reference


async def _conversation(session: AsyncSession, reference: str) -> Conversation:
    found = await session.scalar(select(Conversation).where(
        Conversation.reference == reference, Conversation.spam.is_(False)))
    if found is None:
        raise web.HTTPNotFound()
    return found


def can_add(request: web.Request, conversation: Conversation) -> bool:
    if conversation.channel != Channel.WEBFORM.value:
        return False  # the citizen answers on their own channel
    if conversation.status in LIVE_STATUSES:
        return True
    window = timedelta(days=request.app[HUB_KEY].settings.hub.reopen_window_days)
    resolved = conversation.resolved_at or conversation.updated_at
    return (conversation.status == ConversationStatus.RESOLVED.value
            and utcnow() - resolved <= window)


async def _timeline(session: AsyncSession, conversation_id: int, language: i18n.Language,
                    link: Callable[[int], str]) -> list[dict[str, Any]]:
    rows = list(await session.scalars(
        select(Message).where(Message.conversation_id == conversation_id,
                              Message.direction.in_((Direction.INBOUND.value,
                                                     Direction.OUTBOUND.value)))
        .order_by(Message.created_at, Message.id)))
    files: dict[int, list[dict[str, str]]] = {}
    if rows:
        for attachment_id, message_id, filename in await session.execute(
                select(Attachment.id, Attachment.message_id, Attachment.filename)
                .where(Attachment.message_id.in_([m.id for m in rows]),
                       Attachment.inline.is_(False)).order_by(Attachment.id)):
            files.setdefault(message_id, []).append(
                {"name": filename, "url": link(attachment_id)})
    return [{"mine": m.direction == Direction.INBOUND.value,
             "who": language._("You") if m.direction == Direction.INBOUND.value
             else language._("City Hall"),
             "when": language.when(m.created_at), "body": m.body,
             "files": files.get(m.id, [])}
            for m in rows if not (m.direction == Direction.INBOUND.value and m.automatic)]


async def _page(request: web.Request, reference: str, language: i18n.Language, *,
                typed: str = "", error: tuple[str, str] | None = None,
                status: int = 200) -> web.Response:
    async with request.app[HUB_KEY].db.read() as session:
        conversation = await _conversation(session, reference)
        timeline = await _timeline(
            session, conversation.id, language,
            functools.partial(file_url, request.app[HUB_KEY].reply_secret, reference))
        expected = _expected_response(request, conversation, language)
        service = _service(request, conversation, language)
    return with_csrf(request, "citizen/track.html", language, {
        "title": language._("Request {reference}", reference=reference),
        "reference": reference, "subject": conversation.subject or "",
        "status": language._(STATUS_WORDS.get(conversation.status, "Received: we are working "
                                                                    "on it")),
        "status_note": language._(STATUS_NOTES.get(conversation.status, "")),
        "opened": language.when(conversation.created_at), "timeline": timeline,
        "can_add": can_add(request, conversation), "typed": typed,
        "error_at": error[0] if error else "", "error": error[1] if error else "",
        "token": secrets.token_urlsafe(24), "sent": request.query.get("sent") == "1",
        "expected": expected, "service": service,
    }, status)


def _service(request: web.Request, conversation: Conversation,
             language: i18n.Language) -> str | None:
    """The queue's title for citizens in their language; None for a queue without one."""
    rules = request.app[HUB_KEY].rules
    current = rules.current if rules is not None else None
    decl = current.queues.get(conversation.queue or "") if current is not None else None
    return decl.citizen_title(language.code) if decl is not None else None


def _expected_response(request: web.Request, conversation: Conversation,
                       language: i18n.Language) -> str | None:
    """"We usually reply within 2 days.": the queue's `expected_response` in queues.toml, in
    words of the citizen's language, while the request waits for the city (open)."""
    rules = request.app[HUB_KEY].rules
    current = rules.current if rules is not None else None
    if current is None or conversation.status != ConversationStatus.OPEN.value:
        return None
    decl = current.queues.get(conversation.queue or "")
    if decl is None or decl.expected_response is None:
        return None
    within = timedelta(minutes=expected_minutes(decl.expected_response))
    words = format_timedelta(within, threshold=1.5, locale=language.code)
    return language._("We usually reply within {time}.", time=words)


async def track_page(request: web.Request) -> web.Response:
    rate_limit(request)
    return await _page(request, _reference(request), i18n.choose(request))


async def add_message(request: web.Request) -> web.Response:
    rate_limit(request)
    reference = _reference(request)
    body = await read_body(request, [PHOTOS])
    check_csrf(request, body.one("csrf"))
    language = i18n.choose(request)
    text = body.one("message").strip()
    photos, error = _checked(text, body.files.get(PHOTOS.id, []), language)
    if error:
        return await _page(request, reference, language, typed=body.one("message")[:MESSAGE_MAX],
                           error=error, status=400)
    hub = request.app[HUB_KEY]
    async with hub.db.read() as session:
        conversation = await _conversation(session, reference)
        sender = await _sender(session, conversation.id)
    if not can_add(request, conversation) or sender is None:
        return await _page(request, reference, language, status=409)
    token = body.one(MESSAGE_TOKEN)
    accepted = await hub.intake.accept(InboundMessage(
        channel=Channel.WEBFORM.value,
        provider_id=f"track:{reference}:{token if TOKEN_RE.match(token) else secrets.token_urlsafe(24)}",
        sender=sender, text=text, language=language.code,
        attachments=tuple(InboundAttachment(p.filename, p.content_type, p.data) for p in photos),
        thread=ThreadHints(reference=reference), meta={"via": "tracking page"}))
    if accepted.conversation_id != conversation.id:  # the intake's threading disagreed
        log.warning("a tracking-page message for %s went to conversation %s", reference,
                    accepted.conversation_id)
    raise web.HTTPSeeOther(f"/track/{reference}?sent=1#timeline")


def _checked(text: str, files: list[tuple[str, str, bytes]],
             language: i18n.Language) -> tuple[list[Upload], tuple[str, str] | None]:
    """The photos to keep, or the error: (the field's id, the message). A message needs a text
    or a photo."""
    errors: list[FieldError] = []
    photos = check_files(PHOTOS, files, errors) if files else []
    if errors:
        return [], ("f-photo", errors[0].message(language.code))
    if len(text) > MESSAGE_MAX:
        return [], ("f-message", language._("Your message must be {max} characters or fewer",
                                            max=MESSAGE_MAX))
    if not text and not photos:
        return [], ("f-message", language._("Enter your message"))
    return photos, None


async def _sender(session: AsyncSession, conversation_id: int) -> str | None:
    """Who wrote the request (the address the form was sent from): its follow-ups come from
    the same identity, so the intake threads them by the reference."""
    sender: str | None = await session.scalar(
        select(Message.sender).where(Message.conversation_id == conversation_id,
                                     Message.direction == Direction.INBOUND.value,
                                     Message.channel == Channel.WEBFORM.value)
        .order_by(Message.id).limit(1))
    return sender
