"""The Telegram channel at start: built from `[telegram]`, the token checked with getMe, the webhook
set (with the secret and allowed_updates) or deleted (polling), and a wrong token or an
unreachable Bot API said clearly without stopping the hub."""

from __future__ import annotations

import json
import logging

import pytest

from hub.adapters.telegram.inbound import WEBHOOK_PATH, TelegramAdapter
from hub.adapters.telegram.normalize import ALLOWED_UPDATES
from hub.app import Hub
from hub.channels import configured_adapters, unbuilt_channels
from hub.config import Settings
from tests.support.http_standin import free_socket
from tests.support.telegram_api import TelegramApi

from .conftest import PUBLIC_URL, SECRET, TgHub, telegram_settings


def test_a_token_builds_the_channel_and_an_empty_secret_is_warned_of() -> None:
    chosen = Settings.model_validate({"telegram": {"token": "1:abc", "secret_token": "s"}})
    (adapter,) = [a for a in configured_adapters(chosen, b"k") if a.name == "telegram"]
    assert isinstance(adapter, TelegramAdapter)
    assert unbuilt_channels(chosen) == []
    no_secret = Settings.model_validate({"telegram": {"token": "1:abc"}})
    assert unbuilt_channels(no_secret) == [
        '[telegram] secret_token is empty: webhook updates are refused (set it, or mode = '
        '"polling")']
    polling = Settings.model_validate({"telegram": {"token": "1:abc", "mode": "polling"}})
    assert unbuilt_channels(polling) == []
    assert [a.name for a in configured_adapters(Settings(), b"k")] == ["email", "webchat"]


@pytest.mark.parametrize("mode", ["webhook"])
async def test_webhook_mode_checks_the_token_and_sets_the_webhook(tg: TgHub) -> None:
    assert len(tg.api.calls("getMe")) == 1
    assert tg.api.webhook == {"url": PUBLIC_URL + WEBHOOK_PATH, "secret_token": SECRET,
                              "max_connections": 40, "allowed_updates": list(ALLOWED_UPDATES)}
    assert tg.api.calls("getUpdates") == [] and tg.api.calls("getupdates") == []


@pytest.mark.parametrize("mode", ["polling"])
async def test_polling_mode_deletes_the_webhook_and_polls(tg: TgHub) -> None:
    assert len(tg.api.calls("getMe")) == 1 and len(tg.api.calls("deleteWebhook")) == 1
    assert tg.api.webhook is None
    poll = (await tg.api.wait_for_requests(1, "getupdates"))[0]
    assert json.loads(poll.params["allowed_updates"]) == list(ALLOWED_UPDATES)


async def test_a_wrong_token_is_said_clearly_and_the_hub_starts(
        settings_data: dict[str, dict[str, object]], telegram_api: TelegramApi,
        caplog: pytest.LogCaptureFixture) -> None:
    telegram_settings(settings_data, telegram_api, "polling")
    settings_data["telegram"]["token"] = "7000000001:wrong"
    hub = Hub(Settings.model_validate(settings_data))
    try:
        with caplog.at_level(logging.ERROR, "hub.adapters.telegram"):
            assert await hub.start() == []
        assert "refused [telegram] token" in caplog.text
        assert telegram_api.calls("getupdates") == []  # nothing polled with a wrong token
        assert await hub.db.ping()
    finally:
        await hub.stop()


async def test_an_unreachable_bot_api_is_logged_and_the_hub_starts(
        settings_data: dict[str, dict[str, object]], telegram_api: TelegramApi,
        caplog: pytest.LogCaptureFixture) -> None:
    telegram_settings(settings_data, telegram_api)
    closed = free_socket()  # bound, never listening: connections are refused
    settings_data["telegram"]["api_base_url"] = f"http://127.0.0.1:{closed.getsockname()[1]}"
    hub = Hub(Settings.model_validate(settings_data))
    try:
        with caplog.at_level(logging.ERROR, "hub.adapters.telegram"):
            assert await hub.start() == []
        assert "did not answer at start" in caplog.text and "webhook not set" in caplog.text
    finally:
        await hub.stop()
        closed.close()
