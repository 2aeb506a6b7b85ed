"""A Telegram update (the Bot API's JSON, from a webhook or getUpdates) -> InboundMessage.

This module owns reading updates, with python-telegram-bot's own types (`Update.de_json`): the
chat id as the sender's identity, `chat.id:message_id` as the provider id and thread key (so
the same message seen by webhook and by polling, or sent twice, is stored once, and a reply to
it threads), edits as messages of their own linked to the original, locations as structured
data with a map link, the files to fetch (read by `media`), `/start` and `/start REF`, the bot
blocked or unblocked (`my_chat_member`), and group or channel traffic, which is stored for the
record but never becomes a request. It never raises for bad input: an update it cannot read is
kept raw and flagged.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telegram import ChatMemberUpdated, Message, Update

from hub.model import DroppedAttachment, InboundMessage, ThreadHints
from hub.tokens import REFERENCE_ALPHABET, REFERENCE_LENGTH

CHANNEL = "telegram"
UNKNOWN_SENDER = "unknown"
MAX_TEXT = 20_000
ALLOWED_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post",
                   "my_chat_member")
# The intake's words (hub/intake.py): a keyword message is never routed as a request.
KEYWORD, ANSWER, LINK_REFERENCE = "keyword", "answer", "link_reference"
_START_RE = re.compile(r"^/start(?:@\w+)?(?:\s+(\S+))?\s*$", re.IGNORECASE)
_REFERENCE_RE = re.compile(rf"^[{REFERENCE_ALPHABET}]{{{REFERENCE_LENGTH}}}$")
_UPDATE_ID_RE = re.compile(rb'"update_id"\s*:\s*(\d{1,20})')

WELCOME = {
    "en": ("Welcome to City Hall. Write your request here (text, photos, documents or your "
           "location) and our staff will answer in this chat."),
    "es": ("Bienvenido al Ayuntamiento. Escriba aquí su solicitud (texto, fotos, documentos o "
           "su ubicación) y nuestro personal le responderá en este chat."),
}


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file a message carries, to be fetched with getFile (see `media`)."""

    kind: str  # photo, document, voice, audio, video, video_note
    file_id: str
    file_size: int | None
    file_name: str
    mime_type: str


def message_key(chat_id: int, message_id: int) -> str:
    """The provider id and thread key of one message in one chat (ours or the citizen's)."""
    return f"{chat_id}:{message_id}"


def media_key(key: str) -> str:
    """The provider id (and spool key suffix) of a message's files, which follow its text."""
    return f"{key}/media"


def payload_key(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def read_update(payload: bytes) -> Update | None:
    """The update as python-telegram-bot's types, or None when it is not one."""
    try:
        data = json.loads(payload)
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return None
        return Update.de_json(data, None)
    except Exception:  # anything the library refuses is kept raw by the caller
        return None


def update_id_in(payload: bytes) -> int | None:
    """The update id even of a payload the library cannot read (for the spool's dedupe key)."""
    match = _UPDATE_ID_RE.search(payload[:4096])
    return int(match.group(1)) if match else None


def parse_update(payload: bytes, received_at: datetime, default_language: str = "en",
                 max_file_bytes: int | None = None) -> InboundMessage:
    """One update as the hub's message; never raises (see `raw_update`). Files larger than
    `max_file_bytes` (their size is in the update) are named as dropped on the message itself,
    so the acknowledgment tells the citizen; the others are fetched behind it (`media`)."""
    update = read_update(payload)
    if update is None:
        return raw_update(payload, received_at, "unreadable_update")
    if update.my_chat_member is not None:
        return _member(update, update.my_chat_member, received_at)
    post = update.channel_post or update.edited_channel_post
    if post is not None:
        return _ignored(update, post, received_at, "channel_post")
    message = update.message or update.edited_message
    if message is None:
        return _ignored(update, None, received_at, "unsupported_update")
    if message.chat.type != "private":
        return _ignored(update, message, received_at, f"{message.chat.type}_chat")
    return _private(update, message, received_at, default_language, max_file_bytes)


def files_of(message: Message) -> list[FileRef]:
    """The files worth keeping: the largest photo size, documents, voice notes, audio, video."""
    found: list[FileRef] = []
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        found.append(FileRef("photo", best.file_id, best.file_size, "photo.jpg", "image/jpeg"))
    if message.document is not None:
        doc = message.document
        found.append(FileRef("document", doc.file_id, doc.file_size,
                             doc.file_name or "document", doc.mime_type or ""))
    if message.voice is not None:
        voice = message.voice
        found.append(FileRef("voice", voice.file_id, voice.file_size, "voice.ogg",
                             voice.mime_type or "audio/ogg"))
    for kind, item, name in (("audio", message.audio, "audio"), ("video", message.video, "video"),
                             ("video_note", message.video_note, "video_note.mp4")):
        if item is not None:
            mime = getattr(item, "mime_type", None) or "video/mp4"
            filename = getattr(item, "file_name", None) or name
            found.append(FileRef(kind, item.file_id, item.file_size, filename, mime))
    return found


def fetchable(files: list[FileRef], max_bytes: int | None) -> list[FileRef]:
    return [f for f in files if max_bytes is None or (f.file_size or 0) <= max_bytes]


def has_files(update: Update | None, max_bytes: int | None = None) -> bool:
    """Does the update bring a private message's files to fetch, as an item of its own?"""
    message = update.message if update is not None else None
    return (message is not None and message.chat.type == "private"
            and bool(fetchable(files_of(message), max_bytes)))


def _private(update: Update, message: Message, received_at: datetime, default_language: str,
             max_file_bytes: int | None) -> InboundMessage:
    chat_id = message.chat.id
    key = message_key(chat_id, message.message_id)
    user = message.from_user
    language = _language(user.language_code if user is not None else None)
    text, meta = _content(message)
    meta.update({"update_id": update.update_id, "message_id": message.message_id})
    if user is not None and user.username:
        meta["username"] = user.username[:100]
    sender_name = (user.full_name if user is not None else message.chat.full_name) or None
    refs: tuple[str, ...] = ()
    if message.reply_to_message is not None:
        refs = (message_key(chat_id, message.reply_to_message.message_id),)
    common: dict[str, Any] = {
        "channel": CHANNEL, "sender": str(chat_id), "sender_name": sender_name,
        "received_at": received_at, "language": language}
    if update.edited_message is not None:
        return _edit(message, key, text, meta, common)
    start = _START_RE.match(message.text or "") if message.text else None
    if start is not None:
        return _start(start.group(1), key, text, meta, common, language or default_language)
    too_large = [f for f in files_of(message) if f not in fetchable([f], max_file_bytes)]
    return InboundMessage(
        provider_id=key, thread_key=key, text=text, full_text=text, meta=meta,
        thread=ThreadHints(refs=refs, continue_latest=True), **common,
        dropped_attachments=tuple(DroppedAttachment(f.file_name, f.file_size or 0, f.mime_type,
                                                    "attachment_too_large") for f in too_large))


def _edit(message: Message, key: str, text: str, meta: dict[str, Any],
          common: dict[str, Any]) -> InboundMessage:
    """An edit is a message of its own, linked to the original: staff see both."""
    edited_at = int(message.edit_date.timestamp()) if message.edit_date else 0
    meta["edit_of"] = key
    return InboundMessage(
        provider_id=f"{key}:edit:{edited_at}", text=text, full_text=text, meta=meta,
        flags=("edited",), thread=ThreadHints(refs=(key,), continue_latest=True), **common)


def _start(argument: str | None, key: str, text: str, meta: dict[str, Any],
           common: dict[str, Any], language: str) -> InboundMessage:
    """`/start` (the chat opened, or reopened after a block): a welcome, never a request.
    `/start REF` (a deep link another channel offered) also asks to join that request."""
    meta[KEYWORD] = "start"
    meta[ANSWER] = WELCOME.get(language, WELCOME["en"])
    reference = (argument or "").upper()
    if not _REFERENCE_RE.match(reference):
        reference = ""
    if reference:
        meta[LINK_REFERENCE] = reference
    return InboundMessage(
        provider_id=key, thread_key=key, text=text, full_text=text, meta=meta,
        automatic=True, flags=("keyword_start",),
        thread=ThreadHints(reference=reference or None, continue_latest=True), **common)


def _content(message: Message) -> tuple[str, dict[str, Any]]:
    """The text staff read (caption, location with a map link) and the details in meta."""
    meta: dict[str, Any] = {}
    parts = [(message.text or message.caption or "")[:MAX_TEXT]]
    location = message.venue.location if message.venue is not None else message.location
    if location is not None:
        lat, lon = round(location.latitude, 6), round(location.longitude, 6)
        meta["location"] = {"latitude": lat, "longitude": lon}
        title = ""
        if message.venue is not None:
            meta["location"] |= {"title": message.venue.title, "address": message.venue.address}
            title = f"{message.venue.title}, {message.venue.address}\n"
        parts.append(f"{title}Location: {lat}, {lon}\n{osm_link(lat, lon)}")
    files = files_of(message)
    if files:
        meta["files"] = [{"kind": f.kind, "file_name": f.file_name, "size": f.file_size}
                         for f in files]
    if not any(parts) and not files:
        kind = _kind(message)
        meta["unsupported"] = kind
        parts.append(f"[{kind}]")
    return "\n".join(p for p in parts if p), meta


def osm_link(lat: float, lon: float) -> str:
    return f"https://www.openstreetmap.org/?mlat={lat}&mlon={lon}#map=17/{lat}/{lon}"


def _kind(message: Message) -> str:
    """What a message without text or files is (a sticker, a contact, a poll...)."""
    for kind in ("sticker", "contact", "poll", "dice", "animation", "game", "story"):
        if getattr(message, kind, None) is not None:
            return kind
    return "unsupported_message"


def _language(code: str | None) -> str | None:
    """ISO 639-1 from Telegram's IETF tag ("es-ES" -> "es")."""
    base = (code or "").split("-")[0].lower()
    return base if re.fullmatch(r"[a-z]{2}", base) else None


def _member(update: Update, change: ChatMemberUpdated, received_at: datetime) -> InboundMessage:
    """The citizen blocked the bot (opt out) or unblocked it (opt back in)."""
    if change.chat.type != "private":
        return _ignored(update, None, received_at, f"{change.chat.type}_membership",
                        chat_id=change.chat.id)
    status = change.new_chat_member.status
    blocked = status in ("kicked", "left")
    text = "[the citizen blocked the bot]" if blocked else "[the citizen started the bot again]"
    keyword = "stop" if blocked else "start"
    return InboundMessage(
        channel=CHANNEL, provider_id=f"update:{update.update_id}", sender=str(change.chat.id),
        sender_name=change.from_user.full_name or None, text=text, received_at=received_at,
        automatic=True, flags=(f"keyword_{keyword}",),
        meta={KEYWORD: keyword, "member_status": str(status), "update_id": update.update_id},
        thread=ThreadHints(continue_latest=True))


def _ignored(update: Update, message: Message | None, received_at: datetime, reason: str, *,
             chat_id: int | None = None) -> InboundMessage:
    """Group and channel traffic: kept for the record, never a citizen's request."""
    if message is not None:
        chat_id = message.chat.id
    meta: dict[str, Any] = {KEYWORD: "ignored", "ignored": reason, "update_id": update.update_id}
    text = ""
    if message is not None:
        text = (message.text or message.caption or "")[:MAX_TEXT]
        meta["chat_title"] = (message.chat.title or "")[:200]
        if message.from_user is not None:
            meta["from"] = message.from_user.id
    return InboundMessage(
        channel=CHANNEL, provider_id=f"update:{update.update_id}",
        sender=str(chat_id) if chat_id is not None else UNKNOWN_SENDER, text=text,
        received_at=received_at, automatic=True, flags=("ignored", reason), meta=meta)


def raw_update(payload: bytes, received_at: datetime, reason: str) -> InboundMessage:
    """The payload kept as it came, flagged: not JSON, not an update the library can read, or
    a parse that crashed or overran its budget. Never raises."""
    update_id = update_id_in(payload)
    return InboundMessage(
        channel=CHANNEL,
        provider_id=f"update:{update_id}" if update_id is not None else payload_key(payload),
        sender=UNKNOWN_SENDER, text=payload[:MAX_TEXT].decode("utf-8", "replace"),
        received_at=received_at, raw=payload, automatic=True,  # no answer to an unknown chat
        flags=tuple(dict.fromkeys(("malformed", reason))))
