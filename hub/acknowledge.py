"""Acknowledgments: one automatic answer to a citizen's new conversation, with its reference.

Never to automatic mail (the intake checks), at most once per conversation (the `acknowledged`
flag commits with the outbox row), in the citizen's language when a template exists for it.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import InboundMessage
from hub.outbound import NoAddressOnChannel, outbox_id_for, queue_outbound
from hub.storage.tables import Conversation

BUILTIN = {
    "en": ("We received your message [#{reference}]",
           "Thank you for writing to us. Your message has been received and will be answered "
           "by our staff.\n\nYour reference: {reference}\nPlease keep it in the subject line "
           "if you write again about this matter.\n"),
    "es": ("Hemos recibido su mensaje [#{reference}]",
           "Gracias por escribirnos. Hemos recibido su mensaje y nuestro personal le "
           "responderá.\n\nSu referencia: {reference}\nConsérvela en el asunto si vuelve a "
           "escribirnos sobre este tema.\n"),
}

# (language, reference, subject) -> (subject, body) or None when no template exists
TemplateLookup = Callable[[str, str, str | None], tuple[str, str] | None]


class Acknowledger:
    def __init__(self, *, channels: set[str], default_language: str,
                 templates: TemplateLookup | None = None) -> None:
        self.channels = channels
        self.default_language = default_language
        self.templates = templates

    def render(self, language: str | None, reference: str,
               subject: str | None) -> tuple[str, str]:
        for lang in (language, self.default_language, "en"):
            if not lang:
                continue
            if self.templates is not None:
                found = self.templates(lang, reference, subject)
                if found is not None:
                    return found
            if lang in BUILTIN:
                title, body = BUILTIN[lang]
                return title.format(reference=reference), body.format(reference=reference)
        raise AssertionError("the English built-in template always exists")

    async def acknowledge(self, session: AsyncSession, conversation: Conversation,
                          msg: InboundMessage) -> list[int]:
        if msg.channel not in self.channels or conversation.acknowledged:
            return []
        title, body = self.render(conversation.language or msg.language, conversation.reference,
                                  msg.subject)
        try:
            message = await queue_outbound(session, conversation, body, subject=title,
                                           automatic=True)
        except NoAddressOnChannel:
            return []
        conversation.acknowledged = True
        return [await outbox_id_for(session, message.id)]
