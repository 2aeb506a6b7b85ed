"""The SMS channel's adapter and its inbound webhook, `POST /webhooks/twilio/sms`.

This module owns the answer to Twilio: the signature is checked first (403 and nothing stored
when it is missing or wrong), then the raw form body is committed to the hub's spool under the
MessageSid (Twilio's retries carry the same sid and are stored once), and only then does Twilio
get its 200 with an empty TwiML `<Response/>` (or, to HELP/INFO, a `<Message>` with
`[sms] help_text`, as carrier rules want it answered at once). An MMS's media are spooled as a
second item right behind the text, so a media fetch that fails never holds the text. Parsing,
threading and routing happen right behind the answer (`SmsSpoolParser`, run by the spool
worker), so nothing slow happens inside the webhook. When the hub cannot take input now the
answer is 503 with Retry-After, and Twilio tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web
from twilio.request_validator import RequestValidator

from hub.adapters.base import AdapterContext, Capability, InputRefused
from hub.config import Settings
from hub.model import InboundMessage, OutboundMessage, SendResult, SpoolItem

from .media import MediaFetcher, MediaUnavailable
from .normalize import (
    CHANNEL,
    SID_RE,
    e164,
    has_media,
    keyword_of,
    media_key,
    parse_media,
    parse_sms,
    payload_key,
    raw_sms,
)
from .outbound import TwilioSender
from .signature import refused, verified_form
from .status import status_route
from .text import sms_text

INBOUND_PATH = "/webhooks/twilio/sms"
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def twiml_message(text: str) -> str:
    """TwiML that makes Twilio text `text` back to the sender."""
    return (f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
            f"{xml_escape(text)}</Message></Response>")


@dataclass(frozen=True, slots=True)
class SmsSpoolParser:
    """A spooled webhook body back into a message; plain data, so it travels to a parse
    process. A text never raises for bad input; an MMS's media item (envelope kind "media")
    raises MediaUnavailable while a fetch fails, so the spool worker tries it again."""

    media: MediaFetcher | None = None

    def __call__(self, payload: bytes, envelope: Mapping[str, Any],
                 received_at: datetime) -> InboundMessage:
        if envelope.get("kind") == "media" and self.media is not None:
            return parse_media(payload, received_at, self.media)
        return parse_sms(payload, received_at)

    def raw_only(self, payload: bytes, envelope: Mapping[str, Any], received_at: datetime,
                 reason: str) -> InboundMessage:
        if envelope.get("kind") == "media":
            # The text is stored already; the media are worth another try, never a raw copy.
            raise MediaUnavailable(f"media not fetched ({reason})")
        return raw_sms(payload, received_at, reason)


def dedupe_key(form: Mapping[str, str], body: bytes) -> str:
    """The MessageSid (what Twilio's retries share), else a hash of the body."""
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or ""
    return sid if SID_RE.match(sid) else payload_key(body)


class SmsAdapter:
    """The SMS channel through Twilio: signed webhooks into the spool, texts out through the
    twilio library, status callbacks to the status sink."""

    name = CHANNEL
    hooks = frozenset({"spool", "routes", "identity", "limits"})

    def __init__(self, settings: Settings, reply_secret: bytes) -> None:
        # No ATTACHMENTS: MMS reaches only US/CA numbers and needs the file at a public URL
        # Twilio fetches; a reply with files is refused before it is queued, never half sent.
        self.capabilities = Capability.DELIVERY_STATUS | Capability.SHORT_TEXT
        if settings.sms.acknowledge:
            self.capabilities |= Capability.ACKNOWLEDGE
        self.settings = settings
        twilio = settings.twilio
        self.spool_parser = SmsSpoolParser(MediaFetcher(
            twilio.account_sid, twilio.auth_token.get_secret_value(), twilio.api_base_url,
            settings.sms.max_media_bytes))
        self.validator = RequestValidator(settings.twilio.auth_token.get_secret_value())
        self.sender = TwilioSender(settings, str(settings.hub.public_url).rstrip("/"))

    def routes(self, ctx: AdapterContext) -> Iterable[web.RouteDef]:
        validator = self.validator

        async def inbound(request: web.Request) -> web.Response:
            body = await request.read()
            form = verified_form(validator, ctx.public_url, request, body)
            if form is None:
                return refused()
            key = dedupe_key(form, body)
            envelope = {"message_sid": key}
            if token := request.headers.get("I-Twilio-Idempotency-Token"):
                envelope["idempotency_token"] = token[:100]
            items = [SpoolItem(channel=CHANNEL, dedupe_key=key, payload=body, envelope=envelope)]
            if has_media(form):  # behind the text, so a failed fetch never holds the text
                items.append(SpoolItem(channel=CHANNEL, dedupe_key=media_key(key), payload=body,
                                       envelope={**envelope, "kind": "media"}))
            try:
                await asyncio.gather(*(ctx.spool.put(item) for item in items))
            except InputRefused as exc:
                return web.Response(status=503, headers={"Retry-After": f"{exc.retry_after:.0f}"})
            if keyword_of(form.get("Body", "")) == "help":  # carrier rules: answered at once
                return web.Response(text=twiml_message(self.settings.sms.help_text),
                                    content_type="text/xml")
            return web.Response(text=TWIML_EMPTY, content_type="text/xml")

        return [web.post(INBOUND_PATH, inbound), status_route(ctx, validator)]

    def normalize_identity(self, address: str) -> str:
        return e164(address)

    def too_long(self, body: str) -> str | None:
        return self.sender.too_long(sms_text(body))

    async def send(self, msg: OutboundMessage) -> SendResult:
        # twilio's Client blocks (requests): the call runs on a thread, off the job's loop.
        return await asyncio.to_thread(self.sender.send, msg)
