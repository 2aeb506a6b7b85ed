"""Staff presence (hub.presence): a staff member with an open events WebSocket is online, in this
process and, through Redis, in every process that shares it; a process that dies drops out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub import presence
from hub.app import Hub
from hub.config import Settings
from hub.presence import Presence
from hub.storage.tables import Staff
from hub.web.app import create_app
from tests.support.adapter import RecordingAdapter
from tests.web.world import World, build_world


async def staff_id(hub: Hub, email: str) -> int:
    async with hub.db.read() as session:
        found = await session.scalar(select(Staff.id).where(Staff.email == email))
    assert found is not None
    return found


async def eventually(check: Callable[[], Awaitable[bool]], want: bool) -> None:
    for _ in range(100):
        if await check() == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still not {want}")


async def test_an_open_events_socket_makes_its_staff_member_online(
        client: TestClient, world: World) -> None:
    hub = world.hub
    assert not await presence.staff_online(hub)
    socket = await client.ws_connect("/api/v1/events",
                                     headers={"Authorization": f"Bearer {world.tokens['agent']}"})
    assert (await asyncio.wait_for(socket.receive_json(), 10))["kind"] == "ready"
    await eventually(lambda: presence.staff_online(hub, "roads"), True)
    assert await presence.staff_online(hub)
    assert not await presence.staff_online(hub, "taxes")  # the agent is not a member there
    assert await presence.online_staff_ids(hub) == {await staff_id(hub, world.emails["agent"])}
    await socket.close()
    await eventually(lambda: presence.staff_online(hub), False)
    assert not await presence.staff_online(hub, "roads")
    assert await presence.online_staff_ids(hub) == set()


async def test_two_sockets_of_one_member_keep_them_online_until_both_close() -> None:
    local = Presence("", "hub")
    await local.register(7)
    await local.register(7)
    await local.unregister(7)
    assert await local.online_ids() == {7}
    await local.unregister(7)
    await local.unregister(7)  # one too many: harmless
    assert await local.online_ids() == set()


async def test_presence_crosses_processes_through_redis(redis_url: str) -> None:
    first, second = Presence(redis_url, "t1"), Presence(redis_url, "t1")
    other_hub = Presence(redis_url, "t2")  # another hub sharing the Redis: its own key
    try:
        await first.register(3)
        assert await second.online_ids() == {3}
        assert await other_hub.online_ids() == set()
        await second.register(5)
        assert await first.online_ids() == {3, 5}
        await first.unregister(3)
        assert await second.online_ids() == {5}
    finally:
        for one in (first, second, other_hub):
            await one.close()


async def test_a_process_that_died_drops_out_after_the_ttl(
        redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "TTL_SECONDS", 0.3)
    dead, alive = Presence(redis_url, "t3"), Presence(redis_url, "t3")
    try:
        await dead.register(9)
        await dead.close()  # no refresh, no goodbye
        assert await alive.online_ids() == {9}
        await asyncio.sleep(0.5)
        assert await alive.online_ids() == set()
        await alive.register(4)
        await asyncio.sleep(0.5)
        await alive.refresh()  # what the refresher does every REFRESH_SECONDS
        assert await Presence(redis_url, "t3").online_ids() == {4}
    finally:
        await alive.close()


async def test_without_redis_reachable_presence_is_this_process_only() -> None:
    away = Presence("redis://127.0.0.1:1", "hub")
    try:
        await away.register(2)
        assert await away.online_ids() == {2}
    finally:
        await away.close()


async def events_of(client: TestClient, world: World, who: str) -> aiohttp.ClientWebSocketResponse:
    socket = await client.ws_connect("/api/v1/events",
                                     headers={"Authorization": f"Bearer {world.tokens[who]}"})
    assert (await asyncio.wait_for(socket.receive_json(), 10))["kind"] == "ready"
    return socket


async def next_staff_event(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = await asyncio.wait_for(socket.receive_json(), 10)
        if event["kind"].startswith("staff."):
            return event


async def test_viewing_and_typing_reach_colleagues_and_end_with_the_socket(
        client: TestClient, world: World) -> None:
    supervisor = await events_of(client, world, "supervisor")
    agent = await events_of(client, world, "agent")
    agent_id = await staff_id(world.hub, world.emails["agent"])
    await agent.send_json({"kind": "viewing", "conversation_id": world.conv, "on": True})
    assert await next_staff_event(supervisor) == {
        "kind": "staff.viewing", "conversation_id": world.conv, "queue": "roads",
        "staff_id": agent_id, "name": "Agent", "on": True, "reply": False}
    await agent.send_json({"kind": "typing", "conversation_id": world.conv, "on": True})
    typing = await next_staff_event(supervisor)
    assert (typing["kind"], typing["on"], typing["name"]) == ("staff.typing", True, "Agent")
    await agent.close()
    ended = [await next_staff_event(supervisor), await next_staff_event(supervisor)]
    assert {(e["kind"], e["on"]) for e in ended} == {("staff.viewing", False),
                                                     ("staff.typing", False)}
    await supervisor.close()


async def test_nobody_hears_of_a_conversation_the_sender_may_not_see(
        client: TestClient, world: World) -> None:
    supervisor = await events_of(client, world, "supervisor")
    outsider = await events_of(client, world, "outsider")
    for frame in ({"kind": "viewing", "conversation_id": world.conv, "on": True},  # not theirs
                  {"kind": "shout", "conversation_id": world.taxes_conv, "on": True},
                  {"kind": "typing", "conversation_id": "1", "on": True}):
        await outsider.send_json(frame)
    await outsider.send_str("not json")
    await outsider.send_json({"kind": "viewing", "conversation_id": world.taxes_conv, "on": True})
    first = await next_staff_event(supervisor)  # the only one that was announced
    assert (first["conversation_id"], first["queue"]) == (world.taxes_conv, "taxes")
    for socket in (outsider, supervisor):
        await socket.close()


async def test_a_workspace_open_on_one_hub_process_is_online_for_another(
        settings_data: dict[str, dict[str, object]], redis_url: str) -> None:
    """Two hubs (as two `hub serve`) on one database and one Redis: an events socket on the
    first makes its member online for the second, for their queue only, until it closes."""
    settings = Settings.model_validate({**settings_data, "redis": {"url": redis_url,
                                                                   "queue_prefix": "two"}})
    first, second = Hub(settings, adapters=[RecordingAdapter()]), Hub(settings)
    await first.prepare()
    await second.prepare()
    try:
        world = await build_world(first)
        async with TestClient(TestServer(create_app(first))) as client:
            socket = await events_of(client, world, "agent")
            await eventually(lambda: presence.staff_online(second, "roads"), True)
            assert not await presence.staff_online(second, "taxes")
            await socket.close()
            await eventually(lambda: presence.staff_online(second, "roads"), False)
    finally:
        await first.stop()
        await second.stop()
