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
    ChannelEntry("sms", lambda s: bool(s.twilio.account_sid
                                       and s.twilio.auth_token.get_secret_value()),
                 "hub.adapters.sms.inbound:SmsAdapter"),
    ChannelEntry("telegram", lambda s: bool(s.telegram.token.get_secret_value()),
                 "hub.adapters.telegram.inbound:TelegramAdapter"),
    ChannelEntry("webchat", lambda s: s.webchat.enabled,
                 "hub.adapters.webchat.inbound:WebchatAdapter"),
)


def configured_adapters(settings: Settings, reply_secret: bytes) -> list[ChannelAdapter]:
    return [entry.build(settings, reply_secret) for entry in CHANNELS if entry.enabled(settings)]


# Credentials of channels that may not be in this build: (section, key, channel).
_CREDENTIALS = (("twilio", "account_sid", "sms"), ("telegram", "token", "telegram"))
# Keys a built channel needs together: some given without the others leave the channel off.
_TOGETHER = {"sms": ("twilio", ("account_sid", "auth_token"))}


def _given(settings: Settings, section: str, key: str) -> bool:
    value = getattr(getattr(settings, section), key)
    return bool(value.get_secret_value() if hasattr(value, "get_secret_value") else value)


def unbuilt_channels(settings: Settings) -> list[str]:
    """Warnings for credentials that do nothing: given to a channel this build does not have,
    or only some of those a channel needs."""
    built = {entry.name for entry in CHANNELS}
    warnings = []
    for section, key, channel in _CREDENTIALS:
        if _given(settings, section, key) and channel not in built:
            warnings.append(f"[{section}] {key} is set, but this build has no {channel} "
                            "channel: it is ignored")
    for channel, (section, keys) in _TOGETHER.items():
        given = [key for key in keys if _given(settings, section, key)]
        missing = [key for key in keys if key not in given]
        if channel in built and given and missing:
            warnings.append(f"[{section}] {', '.join(given)} is set, but {', '.join(missing)} "
                            f"is empty: the {channel} channel is off")
    if "sms" in built and _given(settings, "twilio", "auth_token") and _given(
            settings, "twilio", "account_sid") and not settings.twilio.from_number:
        warnings.append("[twilio] from_number is empty: texts to citizens cannot be sent")
    if ("telegram" in built and _given(settings, "telegram", "token")
            and settings.telegram.mode == "webhook"
            and not _given(settings, "telegram", "secret_token")):
        warnings.append("[telegram] secret_token is empty: webhook updates are refused "
                        "(set it, or mode = \"polling\")")
    return warnings
