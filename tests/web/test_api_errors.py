"""Bad input to the staff API: every refusal is a JSON error naming the problem, never a trace,
and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.web.world import World, call, snapshot

REPLIES = "/api/v1/conversations/{conv}/replies"


@pytest.mark.parametrize(("raw", "status", "code", "says"), [
    (b'{"body": "hi"', 400, "malformed_json", "not valid JSON"),
    (b"\xff\xfe{}", 400, "malformed_json", "not UTF-8"),
    (b'["hi"]', 400, "malformed_json", "JSON object"),
    (b'{"body": "hi", "bcc": "x"}', 400, "unknown_field", "'bcc'"),
    (b'{"body": 42}', 422, "invalid_field", "body"),
    (b'{"body": "   "}', 422, "invalid_field", "body"),
    (b'{"body": "hi", "channel": "fax"}', 422, "invalid_field", "channel"),
    (b"{}", 422, "invalid_field", "body: Field required"),
    (b"", 422, "invalid_field", "body: Field required"),
    (b'{"body": "a\\u0000b"}', 422, "invalid_field", "body: Value error, must not contain NUL"),
], ids=["truncated", "not-utf8", "array", "unknown", "int", "blank", "channel", "missing",
        "empty", "nul"])
async def test_bad_bodies(client: TestClient, world: World, raw: bytes, status: int, code: str,
                          says: str) -> None:
    before = await snapshot(world.hub)
    got, body, _ = await call(client, "POST", REPLIES.format(conv=world.conv),
                              world.tokens["agent"], raw=raw)
    assert (got, body["error"]["code"]) == (status, code)
    assert says in body["error"]["message"]
    assert await snapshot(world.hub) == before


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v1/conversations/{conv}/status", {"status": "done"}, "status"),
    ("/api/v1/conversations/{conv}/status", {"status": ["open"]}, "status"),
    ("/api/v1/conversations/{conv}/assign", {"staff": 7}, "staff"),
    ("/api/v1/conversations/{conv}/assign", {}, "staff"),
    ("/api/v1/conversations/{conv}/transfer", {"queue": None}, "queue"),
    ("/api/v1/conversations/{conv}/notes", {"body": {"x": 1}}, "body"),
    ("/api/v1/staff", {"email": "x@city.example", "name": "X", "role": "boss"}, "role"),
    ("/api/v1/staff", {"email": "x@city.example", "name": "X", "role": "agent",
                       "queues": "roads"}, "queues"),
])
async def test_wrong_types_name_the_field(client: TestClient, world: World, path: str,
                                          body: dict[str, Any], field: str) -> None:
    before = await snapshot(world.hub)
    got, answer, _ = await call(client, "POST", path.format(conv=world.conv),
                                world.tokens["admin"], body)
    assert got == 422
    assert answer["error"]["message"].startswith(f"invalid body: {field}")
    assert await snapshot(world.hub) == before


async def test_unknown_field_on_claim(client: TestClient, world: World) -> None:
    got, body, _ = await call(client, "POST", f"/api/v1/conversations/{world.conv}/claim",
                              world.tokens["agent"], {"force": True})
    assert got == 400 and "'force'" in body["error"]["message"]


@pytest.mark.parametrize("path", [
    "/api/v1/conversations/999999", "/api/v1/contacts/999999", "/api/v1/attachments/999999",
    "/api/v1/conversations/99999999999999999999", "/api/v1/conversations/abc",
    "/api/v1/nothing-here",
])
async def test_unknown_ids_are_404(client: TestClient, world: World, path: str) -> None:
    got, body, _ = await call(client, "GET", path, world.tokens["admin"])
    assert got == 404 and body["error"]["code"] == "not_found"


async def test_unknown_id_on_an_action_is_404(client: TestClient, world: World) -> None:
    got, body, _ = await call(client, "POST", "/api/v1/conversations/424242/status",
                              world.tokens["admin"], {"status": "closed"})
    assert got == 404 and body["error"]["code"] == "not_found"


@pytest.mark.parametrize("query", [
    "cursor=garbage", "cursor=eyJ0IjoxfQ.AAAA", "limit=0", "limit=101", "limit=ten",
    "status=done", "channel=fax", "sort=id", "queue=a&queue=b", "q=a%00b",
])
async def test_bad_query_parameters_are_400_or_422(client: TestClient, world: World,
                                                   query: str) -> None:
    got, body, _ = await call(client, "GET", f"/api/v1/conversations?{query}",
                              world.tokens["agent"])
    assert got in (400, 422) and body["error"]["message"]


async def test_a_cursor_of_one_list_is_refused_by_another(client: TestClient,
                                                          world: World) -> None:
    from hub.web import cursor

    forged = cursor.encode(world.hub.reply_secret, "outbox:dead", {"i": 5})
    got, body, _ = await call(client, "GET", f"/api/v1/conversations?cursor={forged}",
                              world.tokens["agent"])
    assert got == 400 and body["error"]["code"] == "bad_cursor"


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic YTpi", "Bearer hub_nope",
                                    "Bearer " + "x" * 500])
async def test_bad_credentials_are_401_with_a_challenge(client: TestClient, world: World,
                                                        header: str) -> None:
    response = await client.get("/api/v1/queues", headers={"Authorization": header})
    body = await response.json()
    assert response.status == 401 and body["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_stored_text_comes_back_escaped_as_json(client: TestClient, world: World) -> None:
    nasty = '</script><script>alert("x")</script>\u2028\\u0000'
    await call(client, "POST", f"/api/v1/conversations/{world.conv}/notes",
               world.tokens["agent"], {"body": nasty})
    response = await client.get(f"/api/v1/conversations/{world.conv}",
                                headers={"Authorization": f"Bearer {world.tokens['agent']}"})
    assert response.content_type == "application/json"
    assert (await response.json())["messages"][-1]["body"] == nasty
