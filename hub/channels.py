"""Which channel adapters run: those whose configuration is complete (empty credentials: off)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.adapters.base import ChannelAdapter
from hub.config import Settings

if TYPE_CHECKING:
    from hub.app import Hub


def configured_adapters(settings: Settings, hub: Hub) -> list[ChannelAdapter]:
    adapters: list[ChannelAdapter] = []
    if settings.smtp.enabled:
        try:
            from hub.adapters.email import EmailAdapter
        except ImportError:
            EmailAdapter = None
        if EmailAdapter is not None:
            adapters.append(EmailAdapter(settings, reply_secret=hub.reply_secret))
    return adapters
