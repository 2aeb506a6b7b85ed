"""Fixtures for the Telegram channel: the real hub built from settings as `hub serve` builds it
(the TelegramAdapter from `[telegram]`), its HTTP app on a local test server, and the Bot API
stand-in (tests/support/telegram_api.py) on the other side: python-telegram-bot talks to it over
HTTP, and it delivers updates either by posting them to the webhook or by answering getUpdates.

`tg` runs every test in both modes: "webhook" (the stand-in posts each update with the secret
header) and "polling" (the adapter's own getUpdates loop on the hub's loop reads them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.orm import undefer

from hub.adapters.telegram.inbound import WEBHOOK_PATH, TelegramAdapter
from hub.app import Hub
from hub.auth import create_token
from hub.config import Settings
from hub.staff import add_staff
from hub.storage.tables import Conversation, Identity, Message, OutboxItem, SpoolEntry
from hub.web.app import create_app
from tests.support.http_standin import WebhookResponse
from tests.support.telegram_api import TelegramApi

PUBLIC_URL = "https://hub.city.example"
SECRET = "s3cret-Token_for-webhooks"
CHAT = 5550123  # a citizen's private chat (the user id, as Telegram has it)


@dataclass
class TgHub:
    hub: Hub
    client: TestClient
    api: TelegramApi
    token: str
    mode: str
    adapter: TelegramAdapter

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))

    async def post(self, update: dict[str, Any], secret: str | None = SECRET) -> WebhookResponse:
        return await self.api.post_update(self.url(WEBHOOK_PATH), update, secret_token=secret)

    async def deliver(self, *updates: dict[str, Any]) -> None:
        """Hand updates to the hub as the mode does, then work the spool: in webhook mode
        posted (each must get its 200); in polling mode queued at the stand-in, and waited for
        until the poller's next getUpdates confirms them (they are committed by then)."""
        if self.mode == "webhook":
            for update in updates:
                answer = await self.post(update)
                assert answer.status == 200, answer
        else:
            for update in updates:  # all queued before the poller runs again: one batch
                self.api.push_update(update)
            await wait_until(self._confirmed)
        await self.work_spool()

    async def _confirmed(self) -> bool:
        return not self.api.pending

    async def message(self, text: str | None = None, chat: int = CHAT,
                      **fields: Any) -> dict[str, Any]:
        """A private-chat message from the citizen, delivered; returns the update."""
        update = self.api.push_message(chat, text, **fields)
        self.api.pending.remove(update)  # handed over by `deliver`, as the mode does
        await self.deliver(update)
        return update

    def next_update_id(self) -> int:
        """The stand-in's next update id (they only grow, as Telegram's do)."""
        return self.api.next_update_id()

    async def work_spool(self) -> None:
        await self.hub.spool_worker.drain()

    async def reply(self, conversation_id: int, body: str, **extra: Any) -> Any:
        return await self.client.post(f"/api/v1/conversations/{conversation_id}/replies",
                                      json={"body": body, **extra}, headers=self.headers)

    async def send_all(self) -> None:
        await self.hub.jobs.drain()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def rows(hub: Hub, model: Any, *where: Any) -> list[Any]:
    query = select(model)
    if model is Message:
        query = query.options(undefer(Message.raw))
    async with hub.db.read() as session:
        return list(await session.scalars(query.where(*where).order_by(model.id)))


async def conversations(hub: Hub) -> list[Conversation]:
    return await rows(hub, Conversation)


async def messages(hub: Hub, direction: str | None = "inbound") -> list[Message]:
    return await rows(hub, Message, *([Message.direction == direction] if direction else []))


async def spooled(hub: Hub) -> list[SpoolEntry]:
    return await rows(hub, SpoolEntry)


async def identities(hub: Hub) -> list[Identity]:
    return await rows(hub, Identity)


async def outbox(hub: Hub) -> list[OutboxItem]:
    return await rows(hub, OutboxItem)


def telegram_settings(settings_data: dict[str, dict[str, object]], api: TelegramApi,
                      mode: str = "webhook") -> Settings:
    settings_data["hub"] = {**settings_data["hub"], "public_url": PUBLIC_URL}
    settings_data["telegram"] = {"token": api.token, "secret_token": SECRET, "mode": mode,
                                 "api_base_url": api.url, "poll_seconds": 2}
    # Parsing on a thread: a parse process per test costs half a second. The process path (and
    # the parser's pickling) is what test_polling_sigkill's real `hub serve` runs.
    settings_data["spool"] = {**settings_data.get("spool", {}), "parse_processes": 0}
    return Settings.model_validate(settings_data)


@pytest.fixture(params=["webhook", "polling"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def tg(settings_data: dict[str, dict[str, object]], telegram_api: TelegramApi,
             mode: str) -> AsyncIterator[TgHub]:
    """The hub with the channels its settings configure (here: telegram), its listener
    started (getMe, then setWebhook or the poller), delivery and sweeper running; the spool is
    worked by the test (`work_spool`), so outcomes are read at once."""
    hub = Hub(telegram_settings(settings_data, telegram_api, mode))
    adapter = hub.adapters.get("telegram")
    assert isinstance(adapter, TelegramAdapter), "[telegram] token must configure telegram"
    await hub.start(listeners=False)
    await adapter.start(hub.context)
    async with hub.db.transaction() as session:
        staff = await add_staff(session, "clerk@city.example", name="Clerk", role="supervisor")
        token = await create_token(session, staff)
    try:
        async with TestClient(TestServer(create_app(hub))) as client:
            yield TgHub(hub, client, telegram_api, token, mode, adapter)
    finally:
        await adapter.stop()
        await hub.stop()
