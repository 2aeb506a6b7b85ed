"""python-telegram-bot's `Bot`, pointed at `[telegram] api_base_url` (empty: Telegram's own), so
tests talk to a local stand-in of the Bot API over real HTTP.

This module owns how a Bot is made and closed: its HTTP clients are made here and shut here,
without `Bot.initialize` (which would call getMe before every use); a Bot that long-polls gets
a read timeout that outlasts the poll.
"""

from __future__ import annotations

import contextlib

from telegram import Bot
from telegram.request import HTTPXRequest

TELEGRAM_API = "https://api.telegram.org"
SEND_TIMEOUT = 30.0


def api_urls(api_base_url: str) -> tuple[str, str]:
    """(base_url, base_file_url) as Bot wants them: it appends the token to each."""
    base = (api_base_url or TELEGRAM_API).rstrip("/")
    return f"{base}/bot", f"{base}/file/bot"


def make_bot(token: str, api_base_url: str, *, read_timeout: float = SEND_TIMEOUT) -> Bot:
    base_url, base_file_url = api_urls(api_base_url)
    # One client for both of the Bot's slots: a Bot that long-polls is made for that alone.
    request = HTTPXRequest(connection_pool_size=32, read_timeout=read_timeout,
                           write_timeout=SEND_TIMEOUT, connect_timeout=10.0, pool_timeout=10.0)
    return Bot(token, base_url=base_url, base_file_url=base_file_url, request=request,
               get_updates_request=request)


async def shut_down(bot: Bot) -> None:
    """Close the Bot's HTTP client (Bot.shutdown does nothing for a Bot never initialised)."""
    with contextlib.suppress(Exception):
        await bot.request.shutdown()
