"""The Telegram channel's adapter: updates in by webhook (`POST /webhooks/telegram`) or by
polling (`getUpdates` on the hub's loop), both into the spool, both read by one normaliser.

This module owns the answer to Telegram. Webhook: the `X-Telegram-Bot-Api-Secret-Token` header
is compared in constant time with `[telegram] secret_token` (403 and nothing stored otherwise),
the raw body is committed to the spool under its `update_id` (Telegram's retries, and the same
update seen by polling, carry the same id and are stored once), and only then does Telegram get
its 200; when the hub cannot take input now, 503 with Retry-After. Polling: the offset moves
only past updates whose spool put has committed, so a crash in between makes Telegram hand them
out again and the spool's dedupe stores them once. A message's files are spooled as a second
item right behind it, so a failed download never holds the text. At start the token is checked
with getMe (a wrong one is said clearly and leaves the other channels running) and the webhook
is set (webhook mode) or deleted (polling mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from hub import metrics
from hub.adapters.base import AdapterContext, Capability, InputRefused
from hub.config import Settings
from hub.model import InboundMessage, OutboundMessage, SendResult, SpoolItem

from .bot import make_bot, shut_down
from .media import FileFetcher, MediaUnavailable, parse_media
from .normalize import (
    ALLOWED_UPDATES,
    CHANNEL,
    has_files,
    parse_update,
    payload_key,
    raw_update,
    read_update,
    update_id_in,
)
from .outbound import TelegramSender

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
POLL_SECONDS = 25  # getUpdates long poll
POLL_BACKOFF_MAX = 30.0
# The poller asks for raw updates (do_api_request, not Bot.get_updates): it spools them as
# Telegram sent them, as a webhook would have posted them, and one update the library cannot
# read (a 2020 poll, say) must not make the whole batch fail. The Bot API's method names are
# case-insensitive; the lower-case name keeps the library from suggesting get_updates.
RAW_GET_UPDATES = "getupdates"


@dataclass(frozen=True, slots=True)
class TelegramSpoolParser:
    """A spooled update back into a message; plain data, so it travels to a parse process.
    An update never raises for bad input; its files item (envelope kind "media") raises
    MediaUnavailable while a download fails, so the spool worker tries it again."""

    files: FileFetcher | None = None
    default_language: str = "en"

    def __call__(self, payload: bytes, envelope: Mapping[str, Any],
                 received_at: datetime) -> InboundMessage:
        if envelope.get("kind") == "media" and self.files is not None:
            return parse_media(payload, received_at, self.files)
        max_bytes = self.files.max_bytes if self.files is not None else None
        return parse_update(payload, received_at, self.default_language, max_bytes)

    def raw_only(self, payload: bytes, envelope: Mapping[str, Any], received_at: datetime,
                 reason: str) -> InboundMessage:
        if envelope.get("kind") == "media":
            # The text is stored already; the files are worth another try, never a raw copy.
            raise MediaUnavailable(f"files not fetched ({reason})")
        return raw_update(payload, received_at, reason)


def spool_items(body: bytes, via: str, max_file_bytes: int | None = None) -> list[SpoolItem]:
    """The update under its update_id (else a hash of the body), and its files behind it."""
    update_id = update_id_in(body)
    key = f"update:{update_id}" if update_id is not None else payload_key(body)
    envelope: dict[str, Any] = {"update_id": update_id, "via": via}
    items = [SpoolItem(channel=CHANNEL, dedupe_key=key, payload=body, envelope=envelope)]
    if update_id is not None and has_files(read_update(body), max_file_bytes):
        items.append(SpoolItem(channel=CHANNEL, dedupe_key=f"{key}/media", payload=body,
                               envelope={**envelope, "kind": "media"}))
    return items


async def spool_all(ctx: AdapterContext, items: list[SpoolItem]) -> None:
    """Commit the items (one spool batch); raises InputRefused when the hub cannot take them."""
    await asyncio.gather(*(ctx.spool.put(item) for item in items))


def secret_matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class TelegramAdapter:
    """The Telegram channel through the Bot API (python-telegram-bot)."""

    name = CHANNEL
    hooks = frozenset({"spool", "routes", "listener", "connections"})

    def __init__(self, settings: Settings, reply_secret: bytes) -> None:
        telegram = settings.telegram
        self.capabilities = Capability.ATTACHMENTS | Capability.SHORT_TEXT
        if telegram.acknowledge:
            self.capabilities |= Capability.ACKNOWLEDGE
        self.settings = settings
        self.token = telegram.token.get_secret_value()
        self.secret = telegram.secret_token.get_secret_value()
        self.mode = telegram.mode
        self.api_base_url = telegram.api_base_url
        self.spool_parser = TelegramSpoolParser(
            FileFetcher(self.token, self.api_base_url, telegram.max_file_bytes),
            settings.hub.default_language)
        self.sender = TelegramSender(self.token, self.api_base_url)
        self.poll_seconds = telegram.poll_seconds
        self.max_file_bytes = telegram.max_file_bytes
        self._poller: asyncio.Task[None] | None = None
        # How long the poller waits when the hub refuses input (the spool full, the database
        # away) before asking Telegram again: the hub's own worker is draining meanwhile.
        self.refused_wait = 5.0

    # -- webhook ----------------------------------------------------------------------------

    def routes(self, ctx: AdapterContext) -> Iterable[web.RouteDef]:
        secret, max_file_bytes = self.secret, self.max_file_bytes

        async def inbound(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "")
            if not secret_matches(given, secret):
                metrics.WEBHOOK_REJECTED.labels(CHANNEL, request.path,
                                                "missing" if not given else "invalid").inc()
                return web.Response(status=403, text=f"Forbidden: invalid {SECRET_HEADER}\n")
            body = await request.read()
            try:
                await spool_all(ctx, spool_items(body, "webhook", max_file_bytes))
            except InputRefused as exc:
                return web.Response(status=503, headers={"Retry-After": f"{exc.retry_after:.0f}"})
            return web.Response(status=200)

        return [web.post(WEBHOOK_PATH, inbound)]

    # -- start, polling, stop ---------------------------------------------------------------

    async def start(self, ctx: AdapterContext) -> list[str]:
        """Check the token, then set the webhook or start polling. Never raises: a Telegram
        that refuses or cannot be reached is logged, and the hub's other channels go on."""
        bot = make_bot(self.token, self.api_base_url)
        try:
            me = await bot.get_me()
            log.info("telegram: bot @%s answers", me.username)
            if self.mode == "webhook":
                return [await self._set_webhook(bot, ctx.public_url)]
            await bot.delete_webhook()
        except InvalidToken:
            log.error("telegram: the Bot API refused [telegram] token (getMe): the telegram "
                      "channel receives nothing until the token is fixed")
            return []
        except TelegramError as exc:
            log.error("telegram: the Bot API did not answer at start (%s: %s); %s",
                      type(exc).__name__, exc.message,
                      "will keep polling" if self.mode == "polling" else "webhook not set")
            if self.mode == "webhook":
                return []
        finally:
            await shut_down(bot)
        self._poller = asyncio.get_running_loop().create_task(self._poll(ctx))
        return [f"telegram polling {self.api_base_url or 'api.telegram.org'}"]

    async def _set_webhook(self, bot: Bot, public_url: str) -> str:
        url = public_url.rstrip("/") + WEBHOOK_PATH
        if not self.secret:
            log.error("telegram: [telegram] secret_token is empty: webhook updates are refused")
        await bot.set_webhook(url, secret_token=self.secret or None,
                              allowed_updates=list(ALLOWED_UPDATES))
        return f"telegram webhook {url}"

    async def _poll(self, ctx: AdapterContext) -> None:
        bot = make_bot(self.token, self.api_base_url, read_timeout=self.poll_seconds + 10)
        offset, delay = 0, 0.0
        try:
            while True:
                try:
                    updates = await bot.do_api_request(RAW_GET_UPDATES, api_kwargs={
                        "offset": offset or None, "timeout": self.poll_seconds,
                        "allowed_updates": list(ALLOWED_UPDATES)})
                    offset = await self._spool_batch(ctx, updates, offset)
                    delay = 0.0
                except Exception as exc:
                    # Telegram away, another poller (409), a bug: wait, then ask again. The
                    # offset is where the committed updates end, so nothing is skipped.
                    delay = min(POLL_BACKOFF_MAX, max(0.5, delay * 2))
                    log.warning("telegram polling: %s; again in %.1f s", type(exc).__name__,
                                delay, exc_info=not isinstance(exc, TelegramError))
                    await asyncio.sleep(delay)
        finally:
            await shut_down(bot)

    async def _spool_batch(self, ctx: AdapterContext, updates: Any, offset: int) -> int:
        """Spool a getUpdates batch, in order; the new offset passes only updates committed."""
        if not isinstance(updates, list):
            return offset
        for update in updates:
            # ASCII escapes: a lone surrogate Telegram escaped must not fail the encoding.
            body = json.dumps(update, separators=(",", ":")).encode()
            try:
                await spool_all(ctx, spool_items(body, "polling", self.max_file_bytes))
            except InputRefused as exc:
                # Not committed: the offset stays here, and Telegram hands this update out again.
                log.warning("telegram polling: the hub refused input (%s); waiting",
                            type(exc).__name__)
                await asyncio.sleep(min(exc.retry_after, self.refused_wait))
                return offset
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if isinstance(update_id, int):
                offset = max(offset, update_id + 1)
        return offset

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    # -- sends (the chat id's normal form is hub.identities' own rule) ---------------------

    async def send(self, msg: OutboundMessage) -> SendResult:
        return await self.sender.send(msg)

    async def close_connections(self) -> None:
        await self.sender.close()
