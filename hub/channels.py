"""Which channel adapters run: one entry per channel, built when its configuration is complete
(a channel whose credentials are empty is off).

Adding a channel is one entry here plus its package under adapters/; the registry then checks
the adapter against the contract (adapters/base.py) before the hub starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from hub.adapters.base import ChannelAdapter
from hub.config import Settings


@dataclass(frozen=True, slots=True)
class ChannelEntry:
    name: str
    enabled: Callable[[Settings], bool]  # is the channel configured?
    factory: str  # "module:attribute", called as factory(settings, reply_secret)

    def build(self, settings: Settings, reply_secret: bytes) -> ChannelAdapter:
        module, _, attribute = self.factory.partition(":")
        factory = getattr(importlib.import_module(module), attribute)
        adapter: ChannelAdapter = factory(settings, reply_secret)
        return adapter


CHANNELS: tuple[ChannelEntry, ...] = (
    ChannelEntry("email", lambda s: s.smtp.enabled, "hub.adapters.email:EmailAdapter"),
)


def configured_adapters(settings: Settings, reply_secret: bytes) -> list[ChannelAdapter]:
    return [entry.build(settings, reply_secret) for entry in CHANNELS if entry.enabled(settings)]


# Credentials of channels that may not be in this build: (section, key, channel).
_CREDENTIALS = (("twilio", "account_sid", "sms"), ("telegram", "token", "telegram"))


def unbuilt_channels(settings: Settings) -> list[str]:
    """Warnings for credentials given to a channel this build does not have: they do nothing."""
    built = {entry.name for entry in CHANNELS}
    warnings = []
    for section, key, channel in _CREDENTIALS:
        value = getattr(getattr(settings, section), key)
        given = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if given and channel not in built:
            warnings.append(f"[{section}] {key} is set, but this build has no {channel} "
                            "channel: it is ignored")
    return warnings
