"""Acknowledgments: one automatic answer to a citizen's new conversation, with its reference.

Never to automatic mail (the intake checks), at most once per conversation (the `acknowledged`
flag commits with the outbox row), in the citizen's language when a template exists for it,
greeting the citizen by name where we have it. When a rule's auto-reply fires for the same
message (after hours, say), its text goes inside the acknowledgment: one automatic mail for one
message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import DroppedAttachment, InboundMessage
from hub.outbound import NoAddressOnChannel, answered_on, enqueue_outbound
from hub.routing import AutoReply
from hub.storage.tables import Conversation

GREETING = {"en": "Hello{name},", "es": "Hola{name}:"}
DROPPED = {
    "en": ("We could not accept these files:\n{files}\nPlease send them again in separate "
           "messages of at most {limit} each, or as a link to download them."),
    "es": ("No hemos podido aceptar estos archivos:\n{files}\nPor favor, envíelos de nuevo en "
           "mensajes separados de {limit} como máximo, o como un enlace para descargarlos."),
}
WHY = {"en": {"attachment_too_large": "larger than {limit}",
              "too_many_attachments": "too many files in one message"},
       "es": {"attachment_too_large": "mayor de {limit}",
              "too_many_attachments": "demasiados archivos en un mensaje"}}
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

# Phone channels (SMS, Telegram): one short text, no subject. The reference is all the citizen
# needs; answering in the same chat continues the request.
SHORT = {
    "en": "City Hall: we received your message. Your reference is {reference}. Reply here to add "
          "to it.",
    "es": "Ayuntamiento: hemos recibido su mensaje. Su referencia es {reference}. Responda aquí "
          "para añadir algo.",
}

# (template name, language, variables) -> (subject, body), only when the rule folder has that
# template in exactly that language
TemplateLookup = Callable[[str, str, dict[str, Any]], tuple[str, str] | None]
ACKNOWLEDGMENT = "acknowledgment"
SHORT_ACKNOWLEDGMENT = "acknowledgment_short"


class Acknowledger:
    def __init__(self, *, channels: set[str], default_language: str,
                 templates: TemplateLookup | None = None,
                 attachment_limit: int = 10_485_760, short: frozenset[str] = frozenset()) -> None:
        self.channels = channels
        self.short = short  # channels read on a phone: the short form, no subject
        self.default_language = default_language
        self.templates = templates
        self.attachment_limit = attachment_limit

    def applies(self, msg: InboundMessage) -> bool:
        """Would a new conversation started by `msg` be acknowledged (spam aside)?"""
        return answered_on(msg.channel, msg.sender) in self.channels and not msg.automatic

    def render(self, language: str | None, variables: dict[str, Any]) -> tuple[str, str]:
        """(subject, body) in the first language of (language, default, English) that has a
        template; the rule folder's `acknowledgment` template before the built-in one."""
        reference = str(variables["reference"])
        for lang in (language, self.default_language, "en"):
            if not lang:
                continue
            if self.templates is not None:
                found = self.templates(ACKNOWLEDGMENT, lang, {**variables, "language": lang})
                if found is not None:
                    return found
            if lang in BUILTIN:
                return _builtin(lang, reference, variables)
        raise AssertionError("the English built-in template always exists")

    def render_short(self, language: str | None, variables: dict[str, Any]) -> str:
        """The text for a phone: the rule folder's `acknowledgment_short` template, else the
        built-in one, in the first language of (language, default, English) that has one."""
        for lang in (language, self.default_language, "en"):
            if not lang:
                continue
            if self.templates is not None:
                found = self.templates(SHORT_ACKNOWLEDGMENT, lang, {**variables, "language": lang})
                if found is not None:
                    return found[1].strip()
            if lang in SHORT:
                notices = variables.get("notices")
                text = SHORT[lang].format(reference=variables["reference"])
                return f"{text}\n\n{notices}" if notices else text
        raise AssertionError("the English built-in short text always exists")

    def notice(self, reply: AutoReply) -> str:
        """An auto-reply's text as a part of the acknowledgment (`embedded` in its template:
        no greeting or signature of its own)."""
        if self.templates is not None:
            found = self.templates(reply.template, reply.language,
                                   {**reply.variables, "embedded": True})
            if found is not None:
                return found[1].strip()
        return reply.body.strip()

    def dropped(self, language: str | None, files: Sequence[DroppedAttachment]) -> str:
        lang = language if language in DROPPED else "en"
        limit = _megabytes(self.attachment_limit)
        lines = "\n".join(f"- {f.filename} ({_megabytes(f.size)}): "
                          f"{WHY[lang].get(f.reason, f.reason).format(limit=limit)}" for f in files)
        return DROPPED[lang].format(files=lines, limit=limit)

    async def acknowledge(self, session: AsyncSession, conversation: Conversation,
                          msg: InboundMessage, notices: Sequence[AutoReply] = (), *,
                          recipient: str | None = None) -> list[int]:
        """The one automatic mail for a new conversation; it carries the text of the
        auto-replies that fired with it (`notices`), so the citizen gets one mail, not two."""
        # A web form's citizen is answered by email or SMS, as that channel acknowledges.
        channel = answered_on(msg.channel, recipient or msg.sender)
        if channel not in self.channels or conversation.acknowledged:
            return []
        language = conversation.language or msg.language
        notes = [self.notice(reply) for reply in notices]
        if msg.dropped_attachments:  # the citizen must know a file did not arrive, and why
            notes.append(self.dropped(language, msg.dropped_attachments))
        variables = {"reference": conversation.reference, "subject": msg.subject,
                     "sender_name": msg.sender_name, "notices": "\n\n".join(notes)}
        title: str | None
        if channel in self.short:
            title, body = None, self.render_short(language, variables)
        else:
            title, body = self.render(language, variables)
        try:
            queued = await enqueue_outbound(session, conversation, body, subject=title,
                                          automatic=True, recipient=recipient)
        except NoAddressOnChannel:
            return []
        conversation.acknowledged = True
        if notices:
            conversation.auto_replies_sent = (conversation.auto_replies_sent or 0) + len(notices)
        return [queued.outbox_id]


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"


def _builtin(language: str, reference: str, variables: dict[str, Any]) -> tuple[str, str]:
    title, body = BUILTIN[language]
    name = variables.get("sender_name")
    greeting = GREETING[language].format(name=f" {name}" if name else "")
    notices = f"{variables['notices']}\n\n" if variables.get("notices") else ""
    return (title.format(reference=reference),
            f"{greeting}\n\n{body.format(reference=reference)}\n{notices}".rstrip() + "\n")
