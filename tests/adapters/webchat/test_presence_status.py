"""Widgets are told live when staff of their queue come online or go offline (a `status`
frame, from hub.presence's change events), and only when what they were told changes."""

from __future__ import annotations

import asyncio

from hub.auth import create_token
from hub.staff import add_staff
from hub.storage.tables import Queue

from .conftest import ChatHub


async def test_staff_of_the_queue_coming_and_going_is_told_live(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    assert visitor.welcome["online"] is False  # nobody has the workspace open
    staff = await chat.client.ws_connect("/api/v1/events", headers=chat.headers)
    assert (await staff.receive_json(timeout=10))["kind"] == "ready"
    came = await visitor.next("status")
    assert (came["online"], came["open"], came["conversation"]) == (True, True, None)
    await staff.close()
    went = await visitor.next("status")
    assert went["online"] is False
    await visitor.close()


async def test_staff_of_another_queue_change_nothing(chat: ChatHub) -> None:
    async with chat.hub.db.transaction() as session:
        session.add(Queue(name="roads", title="Roads"))
        await session.flush()
        other = await add_staff(session, "roads@city.example", name="Rita Roads", role="agent",
                                queues=["roads"])
        token = await create_token(session, other)
    visitor = await chat.visitor()
    staff = await chat.client.ws_connect("/api/v1/events",
                                         headers={"Authorization": f"Bearer {token}"})
    assert (await staff.receive_json(timeout=10))["kind"] == "ready"
    await asyncio.sleep(0.5)  # time for a status that must not come
    await visitor.send(type="ping")
    await visitor.next("pong")
    assert [f for f in visitor.pushed if f["type"] == "status"] == []
    await staff.close()
    await visitor.close()
