"""Administration through the API: staff accounts (admins) and the dead-letter outbox
(supervisors and admins)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.storage.tables import AuditEntry
from tests.support.adapter import RecordingAdapter
from tests.web.world import World, call


async def test_admin_lists_and_adds_staff(client: TestClient, world: World) -> None:
    token = world.tokens["admin"]
    status, body, _ = await call(client, "GET", "/api/v1/staff", token)
    assert status == 200
    assert {s["email"]: s["queues"] for s in body["items"]}["agent@city.example"] == ["roads"]
    new = {"email": "Clerk@City.Example", "name": "Clerk", "role": "agent",
           "queues": ["roads", "taxes"]}
    status, body, _ = await call(client, "POST", "/api/v1/staff", token, new)
    assert status == 201
    assert (body["email"], body["role"], body["queues"]) == ("clerk@city.example", "agent",
                                                              ["roads", "taxes"])
    status, body, _ = await call(client, "POST", "/api/v1/staff", token, new)
    assert status == 409
    status, body, _ = await call(client, "POST", "/api/v1/staff", token,
                                 {**new, "email": "c2@city.example", "queues": ["moon"]})
    assert status == 422 and "moon" in body["error"]["message"]
    async with world.hub.db.read() as session:
        entry = await session.scalar(select(AuditEntry).where(AuditEntry.action == "staff.add",
                                                              AuditEntry.actor == "admin@"
                                                              "city.example"))
    assert entry is not None and entry.detail["email"] == "clerk@city.example"


async def test_dead_letter_is_visible(client: TestClient, world: World,
                                      adapter: RecordingAdapter) -> None:
    adapter.fail_permanent()
    status, reply, _ = await call(client, "POST", f"/api/v1/conversations/{world.conv}/replies",
                                  world.tokens["agent"], {"body": "We fixed it"})
    assert status == 202
    await world.hub.jobs.drain()
    status, body, _ = await call(client, "GET", "/api/v1/outbox?state=dead",
                                 world.tokens["supervisor"])
    assert status == 200
    [item] = body["items"]
    assert (item["message_id"], item["conversation_id"], item["state"], item["attempts"]) == (
        reply["message_id"], world.conv, "dead", 1)
    assert "recipient rejected" in item["last_error"]
    _, detail, _ = await call(client, "GET", f"/api/v1/conversations/{world.conv}",
                              world.tokens["agent"])
    message = detail["messages"][-1]
    assert message["delivery_status"] == "failed" and "recipient rejected" in message[
        "delivery_error"]
    _, pending, _ = await call(client, "GET", "/api/v1/outbox?state=pending",
                               world.tokens["admin"])
    assert pending["items"] == []


async def test_outbox_pages(client: TestClient, world: World,
                            adapter: RecordingAdapter) -> None:
    adapter.fail_permanent()
    for n in range(5):
        await call(client, "POST", f"/api/v1/conversations/{world.conv}/replies",
                   world.tokens["agent"], {"body": f"try {n}"})
    await world.hub.jobs.drain()
    seen: list[int] = []
    url: str | None = "/api/v1/outbox?limit=2"
    while url:
        _, page, _ = await call(client, "GET", url, world.tokens["admin"])
        seen += [item["id"] for item in page["items"]]
        url = page["next_cursor"] and f"/api/v1/outbox?limit=2&cursor={page['next_cursor']}"
    assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen, reverse=True)
