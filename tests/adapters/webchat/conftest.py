"""Fixtures for the web chat channel: the hub built from settings as `hub serve` builds it (the
WebchatAdapter from `[webchat]`, on by default), its HTTP app on a real local server, a
supervisor with an API token, and helpers that speak the chat protocol over real WebSockets."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.adapters.webchat.inbound import SOCKET_PATH, WebchatAdapter
from hub.app import Hub
from hub.auth import create_token
from hub.config import Settings
from hub.staff import add_staff
from hub.storage.tables import Conversation, Identity, Message

PUBLIC_URL = "https://hub.city.example"
CITY_SITE = "https://www.city.example"
STAFF_NAME = "Pat Clerk"
_ids = itertools.count(1)


def client_id() -> str:
    return f"c-{next(_ids)}"


@dataclass
class Visitor:
    """One browser tab's socket, speaking the protocol."""

    socket: aiohttp.ClientWebSocketResponse
    welcome: dict[str, Any] = field(default_factory=dict)
    pushed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def token(self) -> str:
        return str(self.welcome["token"])

    async def send(self, **fields: Any) -> None:
        await self.socket.send_json({"v": 1, **fields})

    async def next(self, *types: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame of one of `types` (others are kept in `pushed`)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.socket.receive_json()
                if frame["type"] in types:
                    return dict(frame)
                self.pushed.append(frame)

    async def say(self, body: str, cid: str | None = None, **extra: Any) -> dict[str, Any]:
        """A message; its ack or error."""
        await self.send(type="message", client_id=cid or client_id(), body=body, **extra)
        return await self.next("ack", "error")

    async def close(self) -> None:
        await self.socket.close()


@dataclass
class ChatHub:
    hub: Hub
    client: TestClient
    token: str
    adapter: WebchatAdapter

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def connect(self, origin: str | None = PUBLIC_URL,
                      **headers: str) -> aiohttp.ClientWebSocketResponse:
        if origin is not None:
            headers["Origin"] = origin
        return await self.client.ws_connect(SOCKET_PATH, headers=headers)

    async def visitor(self, token: str | None = None, after: int | None = None,
                      **hello: Any) -> Visitor:
        """A connected visitor past its welcome."""
        visitor = Visitor(await self.connect())
        fields = {k: v for k, v in (("token", token), ("after", after)) if v is not None}
        await visitor.send(type="hello", **fields, **hello)
        visitor.welcome = await visitor.next("welcome")
        return visitor

    async def reply(self, conversation_id: int, body: str) -> aiohttp.ClientResponse:
        return await self.client.post(f"/api/v1/conversations/{conversation_id}/replies",
                                      json={"body": body}, headers=self.headers)

    async def api(self, method: str, path: str, **options: Any) -> aiohttp.ClientResponse:
        return await self.client.request(method, path, headers=self.headers, **options)

    async def messages(self, *where: Any) -> list[Message]:
        async with self.hub.db.read() as session:
            return list(await session.scalars(select(Message).where(*where)
                                              .order_by(Message.id)))

    async def conversations(self) -> list[Conversation]:
        async with self.hub.db.read() as session:
            return list(await session.scalars(select(Conversation).order_by(Conversation.id)))

    async def identities(self, contact_id: int) -> set[tuple[str, str]]:
        async with self.hub.db.read() as session:
            rows = await session.execute(select(Identity.channel, Identity.address)
                                         .where(Identity.contact_id == contact_id))
            return {(channel, address) for channel, address in rows}

    async def conversation_of(self, reference: str) -> Conversation:
        found = [c for c in await self.conversations() if c.reference == reference]
        assert len(found) == 1
        return found[0]


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


def chat_settings(settings_data: dict[str, dict[str, object]], **webchat: object) -> Settings:
    settings_data["hub"] = {**settings_data["hub"], "public_url": PUBLIC_URL}
    settings_data["webchat"] = {"allowed_origins": [CITY_SITE], **webchat}
    return Settings.model_validate(settings_data)


@pytest.fixture
def webchat_config() -> dict[str, object]:
    """[webchat] keys a test module changes (override the fixture)."""
    return {}


@pytest.fixture
async def chat(settings_data: dict[str, dict[str, object]],
               webchat_config: dict[str, object]) -> AsyncIterator[ChatHub]:
    async with running_chat(chat_settings(settings_data, **webchat_config)) as running:
        yield running


class running_chat:  # used like a function: `async with running_chat(...)`
    """The hub with its configured channels, delivery and sweeper running, served over HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: TestClient | None = None
        self.hub: Hub | None = None

    async def __aenter__(self) -> ChatHub:
        hub = self.hub = Hub(self.settings)
        adapter = hub.adapters.get("webchat")
        assert isinstance(adapter, WebchatAdapter), "[webchat] enabled must configure it"
        await hub.start(listeners=False)
        async with hub.db.transaction() as session:
            staff = await add_staff(session, "clerk@city.example", name=STAFF_NAME,
                                    role="supervisor", queues=["general"])
            token = await create_token(session, staff)
        from hub.web.app import create_app

        self.client = TestClient(TestServer(create_app(hub)))
        await self.client.start_server()
        return ChatHub(hub, self.client, token, adapter)

    async def __aexit__(self, *exc: object) -> None:
        assert self.hub is not None
        try:
            if self.client is not None:
                await self.client.close()
        finally:
            adapter = self.hub.adapters.get("webchat")
            if isinstance(adapter, WebchatAdapter):
                await adapter.stop()
            await self.hub.stop()
