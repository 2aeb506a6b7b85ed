"""Replies to citizens through python-telegram-bot: `sendMessage` for the text (plain, never
parse_mode HTML, so whatever staff typed is shown as typed), split at Telegram's 4,096
characters, then `sendPhoto` / `sendDocument` for attachments.

This module owns the call to the Bot API and how its answers map to the hub's retry policy: 429
is transient with Telegram's own `retry_after` (which the outbox honours); 403 (the bot was
blocked, the user deactivated) is `RecipientOptedOut`, so the identity is marked opted out and
later replies are refused; other 400s (chat not found) are permanent; network trouble and
timeouts are transient. The Telegram message id of the first part is the provider id and, as
`chat:message`, the thread key a citizen's reply to it names.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from datetime import timedelta

from telegram import Bot, InputFile, Message
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from hub.adapters.base import DeliveryError, PermanentError, RecipientOptedOut, TransientError
from hub.adapters.sms.text import sms_text
from hub.model import DeliveryStatus, OutboundAttachment, OutboundMessage, SendResult

from .bot import make_bot, shut_down
from .normalize import message_key

log = logging.getLogger(__name__)

MAX_TEXT = 4096
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # sendPhoto's limit; bigger images go as documents


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Parts of at most `limit` characters, cut at a line break or a space when one is near."""
    parts: list[str] = []
    while len(text) > limit:
        cut = max(text.rfind("\n", 0, limit), text.rfind(" ", 0, limit))
        if cut < limit // 2:
            cut = limit
        parts.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        parts.append(text)
    return parts


class TelegramSender:
    """Sends through one Bot per event loop (a delivery worker's loop is not the hub's)."""

    def __init__(self, token: str, api_base_url: str) -> None:
        self.token = token
        self.api_base_url = api_base_url
        self._bots: dict[asyncio.AbstractEventLoop, Bot] = {}

    def bot(self) -> Bot:
        loop = asyncio.get_running_loop()
        if loop not in self._bots:
            self._bots[loop] = make_bot(self.token, self.api_base_url)
        return self._bots[loop]

    async def close(self) -> None:
        bot = self._bots.pop(asyncio.get_running_loop(), None)
        if bot is not None:
            await shut_down(bot)

    async def send(self, msg: OutboundMessage) -> SendResult:
        try:
            chat_id = int(msg.to)
        except ValueError:
            raise PermanentError(f"not a Telegram chat id: {msg.to!r}", code="bad_chat") from None
        parts = split_text(sms_text(msg.body, msg.html))
        if not parts and not msg.attachments:
            raise PermanentError("the text is empty", code="empty")
        try:
            sent = await self._send_all(chat_id, parts, msg.attachments)
        except TelegramError as exc:
            raise classify(exc) from None
        log.info("telegram sent, message %s, %s part(s)", msg.message_id, len(sent))
        first = sent[0].message_id
        return SendResult(provider_id=str(first), status=DeliveryStatus.SENT.value,
                          thread_key=message_key(chat_id, first))

    async def _send_all(self, chat_id: int, parts: list[str],
                        attachments: tuple[OutboundAttachment, ...]) -> list[Message]:
        bot = self.bot()
        sent = [await bot.send_message(chat_id, part) for part in parts]
        for attachment in attachments:
            upload = InputFile(attachment.data, filename=attachment.filename)
            if attachment.content_type in PHOTO_TYPES and len(attachment.data) <= MAX_PHOTO_BYTES:
                sent.append(await bot.send_photo(chat_id, upload))
            else:
                sent.append(await bot.send_document(chat_id, upload))
        return sent


def retry_seconds(exc: RetryAfter) -> float:
    """RetryAfter.retry_after is an int or a timedelta, depending on PTB_TIMEDELTA."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the int form is deprecated in 22.x; both are read
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def classify(exc: TelegramError) -> DeliveryError:
    """The Bot API's refusal as the hub's verdict (the order matters: BadRequest and TimedOut
    are NetworkErrors in python-telegram-bot)."""
    text = f"Telegram: {exc.message}"
    if isinstance(exc, RetryAfter):
        wait = retry_seconds(exc)
        return TransientError(f"{text} (flood control)", code="429", retry_after=wait)
    if isinstance(exc, Forbidden):
        return RecipientOptedOut(f"{text} (the citizen blocked the bot)", code="403")
    if isinstance(exc, InvalidToken):
        return TransientError(f"{text} (check [telegram] token)", code="401")
    if isinstance(exc, BadRequest | ChatMigrated):
        return PermanentError(text, code="400")
    if isinstance(exc, NetworkError):
        return TransientError(f"Telegram unreachable: {type(exc).__name__}: {exc.message}",
                              code="connection")
    return TransientError(text, code="telegram")
