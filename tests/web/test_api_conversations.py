"""Staff API happy paths on both databases: reading, replying (through delivery), notes, claim,
assign, transfer, status, contacts, attachments, pagination and the audit log."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from hub.model import utcnow
from hub.storage.tables import AuditEntry, Conversation, OutboxItem
from tests.support.adapter import RecordingAdapter, inbound
from tests.web.world import PHOTO, World, call, move

ITEM_FIELDS = {"id", "reference", "queue", "status", "priority", "channel", "subject", "tags",
               "contact", "assignee", "created_at", "last_message_at"}
CONV = "/api/v1/conversations"


async def audit_actions(world: World) -> list[tuple[str, str]]:
    async with world.hub.db.read() as session:
        rows = await session.scalars(select(AuditEntry).where(
            AuditEntry.target_type == "conversation", AuditEntry.actor.like("%@city.example"))
            .order_by(AuditEntry.id))
        return [(row.actor, row.action) for row in rows]


async def test_list_has_the_contract_fields_and_filters(client: TestClient, world: World) -> None:
    token = world.tokens["supervisor"]
    status, body, _ = await call(client, "GET", CONV, token)
    assert status == 200 and len(body["items"]) == 3 and body["next_cursor"] is None
    item = body["items"][-1]
    assert set(item) >= ITEM_FIELDS
    assert set(item["contact"]) == {"id", "name", "identities"}
    assert item["contact"]["identities"] == [{"channel": "sms", "address": "+15550000001"}]
    assert item["created_at"].endswith("Z") and item["assignee"] is None
    for query, expected in [("queue=taxes", {world.taxes_conv}),
                            ("q=pOtHoLe", {world.conv}), ("q=tax bill", {world.taxes_conv}),
                            ("status=open&channel=sms&queue=roads",
                             {world.conv, world.roads_conv_of_both}),
                            ("status=closed", set()), ("channel=email", set()), ("q=50%", set())]:
        _, page, _ = await call(client, "GET", f"{CONV}?{query}", token)
        assert {i["id"] for i in page["items"]} == expected, query


async def test_agent_lists_only_their_queues(client: TestClient, world: World) -> None:
    _, body, _ = await call(client, "GET", CONV, world.tokens["outsider"])
    assert [i["id"] for i in body["items"]] == [world.taxes_conv]
    _, queues, _ = await call(client, "GET", "/api/v1/queues", world.tokens["agent"])
    assert queues == [{"name": "roads", "title": "Roads", "open": 2, "pending": 0,
                       "declared": True, "strategy": "manual"}]
    _, queues, _ = await call(client, "GET", "/api/v1/queues", world.tokens["supervisor"])
    assert [q["name"] for q in queues] == ["general", "roads", "taxes"]


async def test_detail_has_messages_attachments_and_routing(client: TestClient,
                                                           world: World) -> None:
    status, body, _ = await call(client, "GET", f"{CONV}/{world.conv}", world.tokens["agent"])
    assert status == 200 and set(body) >= ITEM_FIELDS
    [message] = body["messages"]
    assert message["direction"] == "inbound" and message["body"] == "Pothole on Main St"
    assert message["delivery_status"] is None and message["delivery_error"] is None
    [attachment] = message["attachments"]
    assert attachment == {"id": world.attachment, "filename": "pot hole.jpg",
                          "content_type": "image/jpeg", "size": len(PHOTO),
                          "url": f"/api/v1/attachments/{world.attachment}"}
    assert body["routing"]["rules_version"] == "default" and body["routing"]["trace"]


async def test_attachment_is_a_download(client: TestClient, world: World) -> None:
    status, data, headers = await call(client, "GET", f"/api/v1/attachments/{world.attachment}",
                                       world.tokens["agent"])
    assert status == 200 and data == PHOTO
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Disposition"].startswith('attachment; filename="pot hole.jpg"')
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_html_attachment_is_not_served_as_html(client: TestClient, world: World) -> None:
    from hub.model import InboundAttachment

    evil = InboundAttachment('x"\r\nSet-Cookie: a=b.html', "text/html", b"<script>1</script>")
    accepted = await world.hub.intake.accept(inbound("+15550000001", "see file",
                                                     attachments=(evil,)))
    _, body, _ = await call(client, "GET", f"{CONV}/{accepted.conversation_id}",
                            world.tokens["supervisor"])
    url = body["messages"][-1]["attachments"][0]["url"]
    status, _, headers = await call(client, "GET", url, world.tokens["supervisor"])
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert "Set-Cookie" not in headers and "\r" not in headers["Content-Disposition"]


async def test_reply_is_delivered_and_status_shown(client: TestClient, world: World,
                                                   adapter: RecordingAdapter) -> None:
    events = world.hub.events.subscribe()
    status, body, _ = await call(client, "POST", f"{CONV}/{world.conv}/replies",
                                 world.tokens["agent"], {"body": "Crew on the way <b>today</b>"})
    assert status == 202 and set(body) == {"message_id"}
    await world.hub.jobs.drain()
    [sent] = adapter.sent
    assert sent.body == "Crew on the way <b>today</b>" and sent.to == "+15550000001"
    _, detail, _ = await call(client, "GET", f"{CONV}/{world.conv}", world.tokens["agent"])
    reply = detail["messages"][-1]
    assert reply["id"] == body["message_id"] and reply["direction"] == "outbound"
    assert reply["delivery_status"] == "sent" and reply["author"] == "agent@city.example"
    assert ("agent@city.example", "conversation.reply") in await audit_actions(world)
    kinds = {events.get_nowait().kind for _ in range(events.qsize())}
    assert {"message.outbound", "conversation.updated"} <= kinds


async def test_reply_on_an_unconfigured_channel_is_refused(client: TestClient,
                                                           world: World) -> None:
    status, body, _ = await call(client, "POST", f"{CONV}/{world.conv}/replies",
                                 world.tokens["agent"], {"body": "hi", "channel": "email"})
    assert status == 422 and body["error"]["code"] == "no_channel"  # CONTRACT.md's code


async def test_a_reply_after_newer_messages_is_held_with_conflict(
        client: TestClient, world: World, adapter: RecordingAdapter) -> None:
    url, token = f"{CONV}/{world.conv}", world.tokens["agent"]
    _, detail, _ = await call(client, "GET", url, token)
    seen = detail["messages"][-1]["id"]  # what the page showed when staff began to write
    await call(client, "POST", f"{url}/notes", token, {"body": "Internal: not a reason to hold"})
    status, first, _ = await call(client, "POST", f"{url}/replies", token,
                                  {"body": "On our way", "after_message_id": seen})
    assert status == 202
    # A colleague's reply went out since the other agent's page loaded: that one is held.
    status, body, _ = await call(client, "POST", f"{url}/replies", world.tokens["supervisor"],
                                 {"body": "We will come", "after_message_id": seen})
    assert status == 409 and body["error"]["code"] == "conflict"
    assert "1 new message" in body["error"]["message"]
    # The citizen writes again: held too, even for the one who saw the colleague's reply.
    await world.hub.intake.accept(inbound("+15550000001", "Any news?", channel="sms"))
    status, body, _ = await call(client, "POST", f"{url}/replies", token,
                                 {"body": "Soon", "after_message_id": first["message_id"]})
    assert status == 409 and body["error"]["code"] == "conflict"
    # "Send anyway": without the guard, the reply goes.
    status, _, _ = await call(client, "POST", f"{url}/replies", token, {"body": "Soon"})
    assert status == 202
    await world.hub.jobs.drain()
    assert [m.body for m in adapter.sent] == ["On our way", "Soon"]


async def test_note_is_stored_and_never_sent(client: TestClient, world: World,
                                             adapter: RecordingAdapter) -> None:
    status, body, _ = await call(client, "POST", f"{CONV}/{world.conv}/notes",
                                 world.tokens["agent"], {"body": "Called roads dept"})
    assert status == 201
    await world.hub.jobs.drain()
    assert adapter.sent == []
    _, detail, _ = await call(client, "GET", f"{CONV}/{world.conv}", world.tokens["agent"])
    note = detail["messages"][-1]
    assert note["id"] == body["message_id"] and note["direction"] == "note"
    async with world.hub.db.read() as session:
        assert await session.scalar(select(OutboxItem)) is None


async def test_claim_then_conflict(client: TestClient, world: World) -> None:
    url = f"{CONV}/{world.conv}/claim"
    status, body, _ = await call(client, "POST", url, world.tokens["agent"])
    assert status == 200 and body["assignee"] == "agent@city.example"
    assert (await call(client, "POST", url, world.tokens["agent"], {}))[0] == 200
    status, body, _ = await call(client, "POST", url, world.tokens["supervisor"])
    assert status == 409 and body["error"]["code"] == "conflict"
    assert await audit_actions(world) == [("agent@city.example", "conversation.claim")]


async def test_assign_rules(client: TestClient, world: World) -> None:
    url, token = f"{CONV}/{world.conv}/assign", world.tokens["agent"]
    for staff, status, code in [("outsider@city.example", 422, "not_a_member"),
                                ("nobody@city.example", 422, "unknown_staff"),
                                ("supervisor@city.example", 200, None),
                                ("AGENT@city.example", 200, None), (None, 200, None)]:
        got, body, _ = await call(client, "POST", url, token, {"staff": staff})
        assert got == status, (staff, body)
        if code:
            assert body["error"]["code"] == code and "staff" in body["error"]["message"]
        else:
            assert body["assignee"] == (staff.lower() if staff else None)
    assert len(await audit_actions(world)) == 3


async def test_transfer_moves_out_of_sight_and_drops_a_non_member(client: TestClient,
                                                                  world: World) -> None:
    await call(client, "POST", f"{CONV}/{world.conv}/claim", world.tokens["agent"])
    url = f"{CONV}/{world.conv}/transfer"
    status, body, _ = await call(client, "POST", url, world.tokens["agent"], {"queue": "nope"})
    assert status == 422 and body["error"]["code"] == "unknown_queue"
    status, body, _ = await call(client, "POST", url, world.tokens["agent"], {"queue": "taxes"})
    assert status == 200 and body["queue"] == "taxes" and body["assignee"] is None
    assert (await call(client, "GET", f"{CONV}/{world.conv}", world.tokens["agent"]))[0] == 404
    assert (await call(client, "GET", f"{CONV}/{world.conv}", world.tokens["outsider"]))[0] == 200


async def test_status_sets_and_clears_resolved_at(client: TestClient, world: World) -> None:
    url, token = f"{CONV}/{world.conv}/status", world.tokens["agent"]
    _, body, _ = await call(client, "POST", url, token, {"status": "resolved"})
    assert body["status"] == "resolved" and body["resolved_at"] is not None
    _, body, _ = await call(client, "POST", url, token, {"status": "pending"})
    assert body["status"] == "pending" and body["resolved_at"] is None
    async with world.hub.db.read() as session:
        row = await session.scalar(select(AuditEntry).where(AuditEntry.action ==
                                                            "conversation.status")
                                   .order_by(AuditEntry.id))  # the first of the two changes
    assert row is not None and row.actor == "agent@city.example"
    assert row.detail == {"from": "open", "to": "resolved"}


async def test_contact_lists_identities_and_visible_conversations(client: TestClient,
                                                                  world: World) -> None:
    url = f"/api/v1/contacts/{world.both_contact}"
    _, body, _ = await call(client, "GET", url, world.tokens["supervisor"])
    assert body["identities"] == [{"channel": "sms", "address": "+15550000002"}]
    assert [c["id"] for c in body["conversations"]] == [world.roads_conv_of_both,
                                                        world.taxes_conv]
    _, body, _ = await call(client, "GET", url, world.tokens["outsider"])
    assert [c["id"] for c in body["conversations"]] == [world.taxes_conv]


async def test_pagination_walks_everything_once(client: TestClient, world: World) -> None:
    for i in range(9):
        accepted = await world.hub.intake.accept(inbound(f"+1555000010{i}", f"message {i}"))
        await move(world.hub, accepted.conversation_id, "roads")
    async with world.hub.db.transaction() as session:  # ties on last_message_at: id decides
        await session.execute(update(Conversation).where(Conversation.id % 3 == 0)
                              .values(last_message_at=utcnow() - timedelta(hours=1)))
    seen: list[int] = []
    url = f"{CONV}?limit=2"
    while url:
        status, page, _ = await call(client, "GET", url, world.tokens["agent"])
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        url = page["next_cursor"] and f"{CONV}?limit=2&cursor={page['next_cursor']}"
    _, everything, _ = await call(client, "GET", f"{CONV}?limit=100", world.tokens["agent"])
    assert seen == [item["id"] for item in everything["items"]]
    assert len(seen) == len(set(seen)) == 11


async def test_concurrent_claims_have_one_winner(client: TestClient, world: World) -> None:
    url = f"{CONV}/{world.conv}/claim"
    results = await asyncio.gather(*(call(client, "POST", url, world.tokens[who])
                                     for who in ("agent", "supervisor", "admin")))
    assert sorted(status for status, _, _ in results) == [200, 409, 409]
