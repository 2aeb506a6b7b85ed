"""The web chat across processes: two `hub serve` and one `hub worker` (real processes) on
PostgreSQL and Redis. A visitor connected to serve A gets the staff reply posted on serve B and
delivered by the worker, live; and serve B knows that the visitor (on A) is here."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_events_across_processes import cluster, relay_port  # noqa: F401 (fixtures)
from tests.e2e.test_quickstart import run

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def own_origin(env: dict[str, str]) -> str:
    """The cluster's `[hub] public_url`: the origin the chat page would have."""
    config = tomllib.loads(Path(env["HUB_CONFIG"]).read_text())
    scheme, _, rest = str(config["hub"]["public_url"]).partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


async def frame_of(socket: aiohttp.ClientWebSocketResponse, *types: str) -> dict[str, Any]:
    """The next frame of one of `types`; a time-out only stops a hung test."""
    while True:
        frame = await asyncio.wait_for(socket.receive_json(), 60)
        if frame["type"] in types:
            return dict(frame)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_reply_sent_through_another_process_reaches_the_visitor(
        cluster: tuple[Path, dict[str, str], list[dict[str, int]]]) -> None:  # noqa: F811
    cwd, env, ports = cluster
    await asyncio.to_thread(run, ["staff", "add", "sup@city.example", "--name", "Sam Super",
                                  "--role", "supervisor"], cwd, env)
    token = (await asyncio.to_thread(run, ["token", "create", "sup@city.example"], cwd, env)
             ).strip().splitlines()[-1]
    serve_a, serve_b = (f"http://127.0.0.1:{p['http']}" for p in ports)
    origin = {"Origin": own_origin(env)}
    async with aiohttp.ClientSession() as http:
        socket = await http.ws_connect(f"{serve_a}/chat/ws", headers=origin)
        await socket.send_json({"v": 1, "type": "hello", "language": "en"})
        welcome = await frame_of(socket, "welcome")
        await socket.send_json({"v": 1, "type": "message", "client_id": "e2e-1",
                                "body": "Is the pool open today?"})
        ack = await frame_of(socket, "ack", "error")
        assert ack["type"] == "ack", ack
        found = await http.get(f"{serve_b}/api/v1/conversations?channel=webchat",
                               headers={"Authorization": f"Bearer {token}"})
        (conversation,) = (await found.json())["items"]
        assert conversation["reference"] == ack["conversation"]["reference"]

        answer = await http.post(
            f"{serve_b}/api/v1/conversations/{conversation['id']}/replies",
            json={"body": "Yes, until 8 pm."}, headers={"Authorization": f"Bearer {token}"})
        assert answer.status == 202, await answer.text()
        pushed = await frame_of(socket, "message")
        assert pushed["body"] == "Yes, until 8 pm." and pushed["author"] == "Sam Super"
        assert pushed["id"] == (await answer.json())["message_id"]

        # The same visitor resumes on serve B: the same conversation, its whole history.
        other = await http.ws_connect(f"{serve_b}/chat/ws", headers=origin)
        await other.send_json({"v": 1, "type": "hello", "token": welcome["token"],
                               "after": ack["id"]})
        resumed = await frame_of(other, "welcome")
        assert resumed["conversation"]["reference"] == ack["conversation"]["reference"]
        assert [m["body"] for m in resumed["messages"]] == ["Yes, until 8 pm."]
        await other.close()
        await socket.close()
