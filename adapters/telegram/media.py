"""A Telegram message's files: photos (the largest size), documents, voice notes, audio and video,
fetched with getFile and the file download through python-telegram-bot, size-capped, kept as
attachments.

Files go through the spool as an item of their own, behind the text (see `inbound`): the text is
stored at once, whatever happens to the files; a fetch that fails (the Bot API away, a timeout,
a 5xx, a 429) raises `MediaUnavailable`, and the spool worker tries that item again later. A file
larger than the cap (or than the 20 MB the Bot API lets a bot download) is not fetched: it is
kept as a dropped attachment, so staff and the citizen are told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from telegram import Bot
from telegram.error import BadRequest, TelegramError

from hub.model import DroppedAttachment, InboundAttachment, InboundMessage, ThreadHints

from .bot import make_bot, shut_down
from .normalize import (
    CHANNEL,
    FileRef,
    fetchable,
    files_of,
    media_key,
    parse_update,
    read_update,
)


class MediaUnavailable(Exception):
    """A file could not be fetched now; the spool item is worth another try."""


@dataclass(frozen=True, slots=True)
class Fetched:
    attachments: tuple[InboundAttachment, ...] = ()
    dropped: tuple[DroppedAttachment, ...] = ()
    skipped: tuple[str, ...] = ()  # file ids Telegram no longer knows


@dataclass(frozen=True, slots=True)
class FileFetcher:
    """Plain data (it travels to a parse process with the spool parser)."""

    token: str
    api_base_url: str = ""
    max_bytes: int = 20 * 1024 * 1024

    def fetch_all(self, files: Sequence[FileRef]) -> Fetched:
        # The parse process (or thread) has no loop of its own: one for this item's fetches.
        return asyncio.run(self._fetch_all(files))

    async def _fetch_all(self, files: Sequence[FileRef]) -> Fetched:
        attachments: list[InboundAttachment] = []
        dropped: list[DroppedAttachment] = []
        skipped: list[str] = []
        bot = make_bot(self.token, self.api_base_url)
        try:
            for ref in files:
                got = await self._fetch(bot, ref)
                if isinstance(got, DroppedAttachment):
                    dropped.append(got)
                elif got is None:
                    skipped.append(ref.file_id[:200])
                else:
                    attachments.append(InboundAttachment(ref.file_name, ref.mime_type
                                                         or "application/octet-stream", got))
        finally:
            await shut_down(bot)
        return Fetched(tuple(attachments), tuple(dropped), tuple(skipped))

    async def _fetch(self, bot: Bot, ref: FileRef) -> bytes | DroppedAttachment | None:
        """The file's bytes; a DroppedAttachment over the cap; None when it is gone."""
        if ref.file_size is not None and ref.file_size > self.max_bytes:
            return self._too_large(ref, ref.file_size)
        try:
            file = await bot.get_file(ref.file_id)
            if file.file_size is not None and file.file_size > self.max_bytes:
                return self._too_large(ref, file.file_size)
            data = bytes(await file.download_as_bytearray())
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                return self._too_large(ref, ref.file_size or 0)
            return None  # an invalid file id: asking again will not help
        except TelegramError as exc:  # network trouble, 5xx, flood control: try again later
            raise MediaUnavailable(type(exc).__name__) from None
        if len(data) > self.max_bytes:
            return self._too_large(ref, len(data))
        return data

    @staticmethod
    def _too_large(ref: FileRef, size: int) -> DroppedAttachment:
        return DroppedAttachment(ref.file_name, size, ref.mime_type, "attachment_too_large")


def parse_media(payload: bytes, received_at: datetime, fetcher: FileFetcher) -> InboundMessage:
    """The files of one message, fetched, as a message that follows its text into the same
    conversation. Raises MediaUnavailable when a fetch should be tried again later."""
    text = parse_update(payload, received_at)
    update = read_update(payload)
    message = update.message if update is not None else None
    files = files_of(message) if message is not None else []
    # Those over the cap by their announced size are named on the text message already.
    fetched = fetcher.fetch_all(fetchable(files, fetcher.max_bytes))
    flags = ["media_unavailable"] if fetched.skipped else []
    meta: dict[str, object] = {"media_of": text.provider_id}
    if fetched.skipped:
        meta["media_skipped"] = list(fetched.skipped)
    return InboundMessage(
        channel=CHANNEL, provider_id=media_key(text.provider_id), sender=text.sender,
        sender_name=text.sender_name, received_at=received_at, language=text.language,
        attachments=fetched.attachments, dropped_attachments=fetched.dropped,
        thread=ThreadHints(refs=(text.provider_id,), continue_latest=True),
        flags=tuple(flags), meta=meta)
