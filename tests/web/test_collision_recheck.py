"""Collision frames are re-authorised: a conversation moved to a queue the sender is not in
stops being announced (and is never announced under its old queue) once the socket's
remembered visibility is read again."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from hub.web import collision
from tests.web.test_presence import events_of, next_staff_event
from tests.web.world import World, move


async def test_a_conversation_moved_away_is_no_longer_announced(
        client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collision, "RECHECK_SECONDS", 0.0)
    supervisor = await events_of(client, world, "supervisor")
    agent = await events_of(client, world, "agent")
    outsider = await events_of(client, world, "outsider")
    await agent.send_json({"kind": "viewing", "conversation_id": world.conv, "on": True})
    first = await next_staff_event(supervisor)
    assert (first["conversation_id"], first["queue"]) == (world.conv, "roads")
    await move(world.hub, world.conv, "taxes")  # the agent is not in taxes
    await agent.send_json({"kind": "viewing", "conversation_id": world.conv, "on": True})
    await outsider.send_json({"kind": "viewing", "conversation_id": world.taxes_conv,
                              "on": True})
    later = await next_staff_event(supervisor)  # the agent's second frame was not announced
    assert (later["conversation_id"], later["staff_id"]) != (world.conv, first["staff_id"])
    assert later["conversation_id"] == world.taxes_conv
    for socket in (agent, outsider, supervisor):
        await socket.close()
