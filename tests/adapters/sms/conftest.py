"""Fixtures for the SMS channel: the real hub built from settings as `hub serve` builds it (the
SmsAdapter from `[twilio]`), its HTTP app on a local test server, and the Twilio stand-in
(tests/support/twilio_api.py) on the other side: the real twilio library sends to it over
HTTP, and it posts webhooks signed by twilio's own RequestValidator.

Twilio is told the hub is at PUBLIC_URL, which is not the address the test server listens
on, as behind a proxy: signatures are made for PUBLIC_URL + path.
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

from hub.adapters.sms.inbound import INBOUND_PATH, SmsAdapter
from hub.adapters.sms.status import STATUS_PATH
from hub.app import Hub
from hub.auth import create_token
from hub.config import Settings
from hub.staff import add_staff
from hub.storage.tables import Conversation, Message, SpoolEntry
from hub.web.app import create_app
from tests.support.http_standin import WebhookResponse
from tests.support.twilio_api import ACCOUNT_SID, AUTH_TOKEN, TwilioApi

PUBLIC_URL = "https://hub.city.example"
CITY_NUMBER = "+15005550006"
CITIZEN = "+14155550123"


@dataclass
class SmsHub:
    hub: Hub
    client: TestClient
    api: TwilioApi
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))

    async def text(self, body: str, sender: str = CITIZEN, **kwargs: Any) -> WebhookResponse:
        """A citizen's text, posted by the stand-in as Twilio posts it, signed for PUBLIC_URL."""
        return await self.api.send_inbound(self.url(INBOUND_PATH), sender, body, to=CITY_NUMBER,
                                           sign_url=PUBLIC_URL + INBOUND_PATH, **kwargs)

    async def post(self, params: dict[str, str], **kwargs: Any) -> WebhookResponse:
        kwargs.setdefault("sign_url", PUBLIC_URL + INBOUND_PATH)
        return await self.api.post_signed(self.url(INBOUND_PATH), params, **kwargs)

    async def status(self, sid: str, status: str, **kwargs: Any) -> WebhookResponse:
        return await self.api.send_status(sid, status, url=self.url(STATUS_PATH),
                                          sign_url=PUBLIC_URL + STATUS_PATH, **kwargs)

    async def work_spool(self) -> None:
        """Work what the webhooks spooled, as the spool worker does right behind the 200."""
        await self.hub.spool_worker.drain()

    async def reply(self, conversation_id: int, body: str) -> Any:
        answer = await self.client.post(f"/api/v1/conversations/{conversation_id}/replies",
                                        json={"body": body}, headers=self.headers)
        return answer

    async def deliver(self) -> None:
        await self.hub.jobs.drain()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def conversations(hub: Hub) -> list[Conversation]:
    async with hub.db.read() as session:
        return list(await session.scalars(select(Conversation).order_by(Conversation.id)))


async def messages(hub: Hub, direction: str | None = "inbound") -> list[Message]:
    query = select(Message).options(undefer(Message.raw))
    if direction is not None:
        query = query.where(Message.direction == direction)
    async with hub.db.read() as session:
        return list(await session.scalars(query.order_by(Message.id)))


async def spooled(hub: Hub) -> list[SpoolEntry]:
    async with hub.db.read() as session:
        return list(await session.scalars(select(SpoolEntry).order_by(SpoolEntry.id)))


def sms_settings(settings_data: dict[str, dict[str, object]], api_url: str) -> Settings:
    settings_data["hub"] = {**settings_data["hub"], "public_url": PUBLIC_URL}
    settings_data["twilio"] = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                               "from_number": CITY_NUMBER, "api_base_url": api_url}
    # Off as email's is in the shared test settings; the acknowledgment's own tests turn it on.
    settings_data.setdefault("sms", {"acknowledge": False})
    return Settings.model_validate(settings_data)


@pytest.fixture
async def sms(settings_data: dict[str, dict[str, object]],
              twilio_api: TwilioApi) -> AsyncIterator[SmsHub]:
    """The hub with the channels its settings configure (here: sms), delivery and sweeper
    running; the spool is worked by the test (`work_spool`), so outcomes are read at once."""
    hub = Hub(sms_settings(settings_data, twilio_api.url))
    assert isinstance(hub.adapters.get("sms"), SmsAdapter), "[twilio] must configure sms"
    await hub.start(listeners=False)
    async with hub.db.transaction() as session:
        staff = await add_staff(session, "clerk@city.example", name="Clerk", role="supervisor")
        token = await create_token(session, staff)
    try:
        async with TestClient(TestServer(create_app(hub))) as client:
            yield SmsHub(hub, client, twilio_api, token)
    finally:
        await hub.stop()
