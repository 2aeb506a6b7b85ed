"""Live events over WebSocket `/api/v1/events`: each caller hears the events of the queues they
may see (agents their own queues, supervisors every queue), as JSON text frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from hub.events import Event
from tests.web.world import World


async def heard(client: TestClient, world: World, who: str) -> list[dict[str, Any]]:
    """What `who` hears, up to the first message.inbound, of one event per queue (roads, taxes,
    none), then a message.inbound in roads and one in taxes."""
    socket = await client.ws_connect("/api/v1/events",
                                     headers={"Authorization": f"Bearer {world.tokens[who]}"})
    ready = await asyncio.wait_for(socket.receive_json(), 10)
    assert ready == {"kind": "ready", "conversation_id": None, "queue": None}
    for conversation_id, queue in ((world.conv, "roads"), (world.taxes_conv, "taxes"),
                                   (999, None)):
        world.hub.events.publish(Event("conversation.updated", conversation_id, queue,
                                       {"action": "status"}))
    for conversation_id, queue in ((world.conv, "roads"), (world.taxes_conv, "taxes")):
        world.hub.events.publish(Event("message.inbound", conversation_id, queue, {}))
    events = []
    while True:
        message = await asyncio.wait_for(socket.receive(), 10)
        assert message.type == aiohttp.WSMsgType.TEXT
        events.append(json.loads(message.data))
        if events[-1]["kind"] == "message.inbound":
            break
    await socket.close()
    return events


async def test_an_agent_hears_only_their_queues(client: TestClient, world: World) -> None:
    events = await heard(client, world, "agent")
    assert [(e["kind"], e["queue"]) for e in events] == [("conversation.updated", "roads"),
                                                         ("message.inbound", "roads")]
    assert events[0] == {"kind": "conversation.updated", "conversation_id": world.conv,
                         "queue": "roads", "action": "status"}
    outsider = await heard(client, world, "outsider")
    assert [(e["kind"], e["queue"]) for e in outsider] == [("conversation.updated", "taxes"),
                                                           ("message.inbound", "taxes")]


async def test_a_supervisor_hears_every_queue(client: TestClient, world: World) -> None:
    events = await heard(client, world, "supervisor")
    assert [e["queue"] for e in events] == ["roads", "taxes", None, "roads"]


async def test_without_a_token_there_is_no_socket(client: TestClient, world: World) -> None:
    response = await client.get("/api/v1/events", headers={"Upgrade": "websocket",
                                                          "Connection": "Upgrade"})
    assert response.status == 401
