"""Twilio's inbound-message webhook (form fields) -> InboundMessage.

This module owns reading what Twilio posts: sender and recipient in E.164 (phonenumbers), the
MessageSid as the provider id, the text, a reference code the citizen quoted (`#ABC...`) as a
thread hint, and the MMS media list (kept in `meta` for now). It never raises for bad input:
fields it cannot use make a message that is stored and flagged, so one poison payload never
blocks the texts behind it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import phonenumbers

from hub.model import InboundMessage, ThreadHints
from hub.tokens import BARE_REFERENCE_RE, REFERENCE_LENGTH

from .media import MediaFetcher

CHANNEL = "sms"
UNKNOWN_SENDER = "unknown"
MAX_MEDIA = 10  # Twilio sends at most 10 media per MMS
MAX_FIELD = 2000  # a field longer than this is not Twilio's (Body is at most 1600 characters)
MAX_TEXT = 20_000
# "#ABCDEFGH23" in any case; a bare code must stand alone and be written in capitals.
_HASH_REFERENCE_RE = re.compile(rf"#([A-HJKMNP-Za-hjkmnp-z2-9]{{{REFERENCE_LENGTH}}})(?![A-Za-z0-9])")
SID_RE = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")


# Carrier keywords: the whole text, trimmed, any case (see `keyword_of`).
KEYWORDS: dict[str, str] = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), "stop"),
    **dict.fromkeys(("START", "UNSTOP"), "start"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}


def keyword_of(text: str) -> str | None:
    """"stop", "start" or "help" when the whole text is one of the carrier keywords."""
    return KEYWORDS.get(text.strip().strip(".!").upper()) if len(text) < 40 else None


class InvalidPhone(ValueError):
    pass


def e164(number: str) -> str:
    """`+15551234567` from what Twilio sends (`+1 555...`, `whatsapp:+1...`); ValueError if it is
    not a possible phone number (short codes, alphanumeric sender ids, garbage)."""
    value = number.strip().removeprefix("whatsapp:")
    if not value.startswith("+"):
        raise InvalidPhone("not an international number")
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone("not a possible phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def form_fields(payload: bytes) -> list[tuple[str, str]]:
    """The urlencoded body as (name, value) pairs, in order; strict UTF-8 (ValueError)."""
    return parse_qsl(payload.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                     errors="strict", max_num_fields=1000)


def find_reference(text: str) -> str | None:
    """A reference code the citizen quoted: `#CODE` (any case), else a bare code in capitals."""
    match = _HASH_REFERENCE_RE.search(text)
    if match:
        return match.group(1).upper()
    bare = BARE_REFERENCE_RE.findall(text)
    return bare[-1] if bare else None


def payload_key(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def parse_sms(payload: bytes, received_at: datetime) -> InboundMessage:
    """One inbound SMS/MMS from Twilio's form body; never raises (see `raw_sms`)."""
    try:
        fields = form_fields(payload)
    except ValueError:
        return raw_sms(payload, received_at, "malformed_form")
    form: dict[str, str] = {}
    for name, value in fields:
        form.setdefault(name, value)
    flags: list[str] = []
    meta: dict[str, Any] = {}
    sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or ""
    if not SID_RE.match(sid):
        flags.append("bad_message_sid")
        meta["message_sid"] = sid[:100]
        sid = payload_key(payload)
    raw_from = form.get("From", "")
    try:
        sender = e164(raw_from)
    except ValueError:
        sender = UNKNOWN_SENDER
        flags.append("bad_sender")
        meta["from"] = raw_from[:100]
    recipient: str | None
    try:
        recipient = e164(form.get("To", ""))
    except ValueError:
        recipient = None
        meta["to"] = form.get("To", "")[:100]
    text = form.get("Body", "")
    if any(len(value) > MAX_FIELD for _, value in fields) or len(fields) > 200:
        flags.append("oversized_fields")
        text = text[:MAX_TEXT]
    media = _media(form, flags)
    if media:
        meta["media"] = media
    for key in ("FromCountry", "FromState", "FromCity", "NumSegments", "AccountSid"):
        if form.get(key):
            meta[key] = form[key][:100]
    if flags:
        flags.insert(0, "malformed")
    keyword = keyword_of(text)
    if keyword is not None:
        meta["keyword"] = keyword
        flags.append(f"keyword_{keyword}")
    usable = sender != UNKNOWN_SENDER
    return InboundMessage(
        channel=CHANNEL, provider_id=sid, sender=sender, recipient=recipient, text=text,
        full_text=text, received_at=received_at, thread_key=sid,
        thread=ThreadHints(continue_latest=usable,
                           reference=find_reference(text) if usable else None),
        # A keyword is stored with the conversation, but never answered automatically.
        automatic=keyword is not None, flags=tuple(flags), meta=meta,
        raw=payload if "malformed" in flags else None)


def media_key(sid: str) -> str:
    """The provider id (and spool key) of an MMS's media, which follow its text."""
    return f"{sid}/media"


def has_media(form: Mapping[str, str]) -> bool:
    return any((form.get(f"MediaUrl{index}") or "").startswith(("https://", "http://"))
               for index in range(MAX_MEDIA))


def parse_media(payload: bytes, received_at: datetime, fetcher: MediaFetcher) -> InboundMessage:
    """The media of one MMS, fetched, as a message that follows its text into the same
    conversation. Raises MediaUnavailable when a fetch should be tried again later."""
    text = parse_sms(payload, received_at)
    fetched = fetcher.fetch_all(text.meta.get("media", []))
    flags = [*text.flags, *(["media_unavailable"] if fetched.skipped else [])]
    meta: dict[str, Any] = {"media_of": text.provider_id}
    if fetched.skipped:
        meta["media_skipped"] = list(fetched.skipped)
    return InboundMessage(
        channel=CHANNEL, provider_id=media_key(text.provider_id), sender=text.sender,
        recipient=text.recipient, received_at=received_at,
        attachments=fetched.attachments, dropped_attachments=fetched.dropped,
        thread=ThreadHints(refs=(text.provider_id,),
                           continue_latest=text.thread.continue_latest),
        flags=tuple(dict.fromkeys(flags)), meta=meta)


def _media(form: Mapping[str, str], flags: list[str]) -> list[dict[str, str]]:
    try:
        count = int(form.get("NumMedia", "0") or "0")
    except ValueError:
        flags.append("bad_num_media")
        count = MAX_MEDIA
    media = []
    for index in range(max(0, min(count, MAX_MEDIA))):
        url = form.get(f"MediaUrl{index}", "")
        if not url.startswith(("https://", "http://")):
            continue
        media.append({"url": url[:MAX_FIELD],
                      "content_type": form.get(f"MediaContentType{index}", "")[:200]})
    return media


def raw_sms(payload: bytes, received_at: datetime, reason: str) -> InboundMessage:
    """The payload kept as it came, flagged: for a body that is not a form, or a parse that
    crashed or overran its budget. Never raises."""
    return InboundMessage(
        channel=CHANNEL, provider_id=_sid_in(payload) or payload_key(payload),
        sender=UNKNOWN_SENDER, text=payload[:MAX_TEXT].decode("utf-8", "replace"),
        received_at=received_at, raw=payload, flags=tuple(dict.fromkeys(("malformed", reason))))


def _sid_in(payload: bytes) -> str | None:
    match = re.search(rb"(?:^|&)MessageSid=([A-Z]{2}[0-9a-fA-F]{32})(?:&|$)", payload[:20_000])
    return match.group(1).decode() if match else None
