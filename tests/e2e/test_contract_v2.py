"""Adapter contract v2 end to end, with a channel that uses the contract alone
(tests/support/loopback.py), on both databases: a webhook spools raw input and the spool worker
(parsing in a child process) makes it a conversation; a staff reply goes out through the async
send; the provider's status report comes back through the status sink; each step is an event.
And the registry refuses adapters that do not keep the contract, at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.adapters.base import AdapterError, Capability, check_adapter
from hub.app import Hub
from hub.auth import create_token
from hub.config import Settings
from hub.events import Event
from hub.identities import InvalidAddress, normalize_address
from hub.model import OutboundMessage, SendResult
from hub.staff import add_staff
from hub.storage.tables import Conversation, Message
from hub.web.app import create_app
from tests.support.loopback import LoopbackAdapter


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[tuple[Hub, LoopbackAdapter, TestClient]]:
    adapter = LoopbackAdapter()
    hub = Hub(settings, adapters=[adapter])
    await hub.start()
    async with TestClient(TestServer(create_app(hub))) as client:
        yield hub, adapter, client
    await hub.stop()


async def token(hub: Hub) -> str:
    async with hub.db.transaction() as session:
        staff = await add_staff(session, "clerk@city.example", name="Clerk", role="supervisor")
        return await create_token(session, staff)


async def next_event(events: asyncio.Queue[Event], kind: str) -> Event:
    while True:
        event = await asyncio.wait_for(events.get(), 30)
        if event.kind == kind:
            return event


async def test_inbound_reply_and_status_through_the_contract_alone(
        running: tuple[Hub, LoopbackAdapter, TestClient]) -> None:
    hub, adapter, client = running
    events = hub.events.subscribe()
    body = {"id": "L-1", "from": "Visitor-42", "text": "The bin was not collected"}
    first = await client.post("/webhooks/loop", json=body)
    again = await client.post("/webhooks/loop", json=body)  # the provider's retry
    assert first.status == again.status == 200
    assert (await first.json(), await again.json()) == ({"duplicate": False}, {"duplicate": True})
    inbound = await next_event(events, "message.inbound")  # the hub's own spool worker
    async with hub.db.read() as session:
        (conversation,) = await session.scalars(select(Conversation))
        (message,) = await session.scalars(select(Message))
    assert conversation.channel == "loop" and inbound.conversation_id == conversation.id
    assert (message.sender, message.body) == ("visitor-42", "The bin was not collected")

    headers = {"Authorization": f"Bearer {await token(hub)}"}
    answer = await client.post(f"/api/v1/conversations/{conversation.id}/replies",
                               json={"body": "It will be collected today."}, headers=headers)
    assert answer.status == 202
    await next_event(events, "message.outbound")
    sent = await next_event(events, "delivery.status")
    assert sent.data["status"] == "sent" and sent.queue == conversation.queue
    (out,) = adapter.sent
    assert (out.to, out.body) == ("visitor-42", "It will be collected today.")

    report = await client.post("/webhooks/loop/status",
                               json={"provider_id": f"LOOP-{out.message_id}", "status": "delivered"})
    assert await report.json() == {"found": True}
    delivered = await next_event(events, "delivery.status")
    assert delivered.data == {"message_id": out.message_id, "status": "delivered"}
    unknown = await client.post("/webhooks/loop/status",
                                json={"provider_id": "LOOP-nope", "status": "delivered"})
    assert await unknown.json() == {"found": False}
    async with hub.db.read() as session:
        stored = await session.get_one(Message, out.message_id)
    assert stored.delivery_status == "delivered"
    # The channel's identity rule is the hub's rule for that channel now.
    assert normalize_address("loop", " Visitor-42 ") == "visitor-42"
    with pytest.raises(InvalidAddress):
        normalize_address("loop", "no spaces allowed")


class _Base:
    name = "broken"
    capabilities = Capability.NONE
    hooks: frozenset[str] = frozenset()

    async def send(self, msg: OutboundMessage) -> SendResult:
        return SendResult(provider_id="x")


class MisspeltHook(_Base):
    hooks = frozenset({"routes"})

    def route(self, ctx: Any) -> list[Any]:  # "routes" was meant
        return []


class UndeclaredListener(_Base):
    async def start(self, ctx: Any) -> list[str]:
        return []

    async def stop(self) -> None:
        return None


class BlockingSend(_Base):
    def send(self, msg: OutboundMessage) -> SendResult:  # type: ignore[override]
        return SendResult(provider_id="x")


class UnknownHook(_Base):
    hooks = frozenset({"polling"})


@pytest.mark.parametrize(("adapter", "says"), [
    (MisspeltHook(), "declares hook 'routes' but does not implement ServesHttp"),
    (UndeclaredListener(), "has start but does not declare the 'listener' hook"),
    (BlockingSend(), "send must be `async def`"),
    (UnknownHook(), "unknown hook(s) ['polling']"),
])
def test_an_adapter_that_breaks_the_contract_stops_the_start(adapter: object, says: str,
                                                            settings: Settings) -> None:
    with pytest.raises(AdapterError) as refused:
        check_adapter(adapter)
    assert says in str(refused.value)
    with pytest.raises(AdapterError):
        Hub(settings, adapters=[adapter])  # type: ignore[list-item]
