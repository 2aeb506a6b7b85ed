"""Status notices: what the citizen is told when staff change their request's status.

Told: `resolved` (with the tracking link and the satisfaction survey's link, hub.survey) and
`closed` straight from open or pending (a request closed without being resolved is an outcome
the citizen must hear of). Not told: `closed` after `resolved` (they heard already), `pending`
(staff set it after asking a question, and the reply that asked says more than a notice could)
and `open` (a reopen by staff is work for staff; the citizen hears when it ends).

A notice is an automatic outbound message in the status change's transaction, on the channel
the conversation is answered on, in the citizen's language (the conversation's, else the
contact's, else `[hub] default_language`), from the rule folder's `status_<status>` template
(`status_<status>_short` on phone channels) or the built-in text. An address that opted out
gets nothing and the status change goes through; spam and conversations of carrier keywords
alone (STOP, HELP) are never notified.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import survey
from hub.acknowledge import TemplateLookup
from hub.model import ConversationStatus, Direction
from hub.outbound import NoAddressOnChannel, enqueue_outbound, reply_channel
from hub.storage.tables import Contact, Conversation, Message

RESOLVED = ConversationStatus.RESOLVED.value
CLOSED = ConversationStatus.CLOSED.value
TOLD = {RESOLVED, CLOSED}

# (subject, body) by status and language; {tracking_url} and, for resolved, {survey_block}.
BUILTIN: dict[str, dict[str, tuple[str, str]]] = {
    RESOLVED: {
        "en": ("Your request has been resolved [#{reference}]",
               "Hello,\n\nYour request {reference} has been resolved. You can read what we "
               "did, and tell us if something is still wrong, here:\n{tracking_url}\n"
               "{survey_block}\nCity Hall\n"),
        "es": ("Su solicitud ha sido resuelta [#{reference}]",
               "Hola:\n\nSu solicitud {reference} ha sido resuelta. Puede leer lo que hemos "
               "hecho, y decirnos si algo sigue mal, aquí:\n{tracking_url}\n"
               "{survey_block}\nAyuntamiento\n"),
    },
    CLOSED: {
        "en": ("Your request has been closed [#{reference}]",
               "Hello,\n\nYour request {reference} has been closed. You can read its messages "
               "here:\n{tracking_url}\n\nTo report something new, please start a new "
               "request.\n\nCity Hall\n"),
        "es": ("Su solicitud ha sido cerrada [#{reference}]",
               "Hola:\n\nSu solicitud {reference} ha sido cerrada. Puede leer sus mensajes "
               "aquí:\n{tracking_url}\n\nPara comunicar algo nuevo, inicie una nueva "
               "solicitud.\n\nAyuntamiento\n"),
    },
}
SURVEY_BLOCK = {
    "en": "\nHow did we do? Tell us in one minute:\n{survey_url}\n",
    "es": "\n¿Qué tal lo hemos hecho? Díganoslo en un minuto:\n{survey_url}\n",
}
SHORT = {
    RESOLVED: {
        "en": "City Hall: your request {reference} is resolved. {tracking_url}{survey_block}",
        "es": "Ayuntamiento: su solicitud {reference} está resuelta. {tracking_url}"
              "{survey_block}",
    },
    CLOSED: {
        "en": "City Hall: your request {reference} is closed. {tracking_url}",
        "es": "Ayuntamiento: su solicitud {reference} está cerrada. {tracking_url}",
    },
}
SHORT_SURVEY = {
    "en": " How did we do? Reply 1 (bad) to 5 (very good) or visit {survey_url}",
    "es": " ¿Qué tal lo hicimos? Responda de 1 (mal) a 5 (muy bien) o visite {survey_url}",
}


@dataclass(frozen=True, slots=True)
class StatusNotices:
    channels: Container[str]  # the configured ones: a notice goes nowhere else
    short: frozenset[str]  # read on a phone: the short form, no subject
    default_language: str
    public_url: str  # without the trailing slash
    templates: TemplateLookup | None = None

    async def __call__(self, session: AsyncSession, conversation: Conversation,
                       old: str) -> list[int]:
        """Queue the notice of `conversation`'s change from `old` to its status, if it gets one;
        the outbox ids to hand to delivery after the commit."""
        if not self._told(old, conversation.status) or conversation.spam:
            return []
        if not await _is_a_request(session, conversation.id):
            return []
        try:
            channel, _ = await reply_channel(session, conversation, None)
        except NoAddressOnChannel:
            return []
        if channel not in self.channels:
            return []
        return await self._queue(session, conversation, channel)

    @staticmethod
    def _told(old: str, new: str) -> bool:
        return new in TOLD and not (new == CLOSED and old == RESOLVED)

    async def _queue(self, session: AsyncSession, conversation: Conversation,
                     channel: str) -> list[int]:
        resolved = conversation.status == RESOLVED
        found = await survey.survey_of(session, conversation.id) if resolved else None
        token = found.token if found is not None else survey.new_token()
        asks = resolved and (found is None or found.answered_at is None)
        language = await _language(session, conversation)
        subject, body = self.render(conversation, language, channel in self.short,
                                    token if asks else None)
        try:
            queued = await enqueue_outbound(session, conversation, body, subject=subject,
                                            automatic=True, channel=channel)
        except NoAddressOnChannel:  # opted out: nothing automatic goes there
            return []
        if asks:
            survey.sent(session, conversation, found, token, queued.message.channel)
        return [queued.outbox_id]

    def render(self, conversation: Conversation, language: str | None, short: bool,
               token: str | None) -> tuple[str | None, str]:
        """(subject, body) in the first of (language, default, English) with a template: the
        rule folder's `status_<status>[_short]` before the built-in one."""
        status = conversation.status
        variables: dict[str, Any] = {
            "reference": conversation.reference,
            "tracking_url": f"{self.public_url}/track/{conversation.reference}",
            "survey_url": f"{self.public_url}/survey/{token}" if token else ""}
        name = f"status_{status}_short" if short else f"status_{status}"
        for lang in dict.fromkeys(x for x in (language, self.default_language, "en") if x):
            if self.templates is not None:
                found = self.templates(name, lang, {**variables, "language": lang})
                if found is not None:
                    return (None, found[1].strip()) if short else found
            if lang in BUILTIN[status]:
                return _builtin(status, lang, short, variables)
        raise AssertionError("the English built-in texts always exist")


def _builtin(status: str, language: str, short: bool,
             variables: dict[str, Any]) -> tuple[str | None, str]:
    blocks = SHORT_SURVEY if short else SURVEY_BLOCK
    block = blocks[language].format(**variables) if variables["survey_url"] else ""
    if short:
        return None, SHORT[status][language].format(**variables, survey_block=block)
    subject, body = BUILTIN[status][language]
    return subject.format(**variables), body.format(**variables, survey_block=block)


async def _language(session: AsyncSession, conversation: Conversation) -> str | None:
    if conversation.language:
        return conversation.language
    language: str | None = await session.scalar(
        select(Contact.language).where(Contact.id == conversation.contact_id))
    return language


async def _is_a_request(session: AsyncSession, conversation_id: int) -> bool:
    """Whether the citizen asked for something: an inbound message that is neither automatic
    (a bounce, an out-of-office) nor a carrier keyword (STOP, HELP)."""
    metas = await session.scalars(
        select(Message.meta).where(Message.conversation_id == conversation_id,
                                   Message.direction == Direction.INBOUND.value,
                                   Message.automatic.is_(False)))
    return any(not (meta or {}).get("keyword") for meta in metas)
