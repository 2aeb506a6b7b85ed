"""What was set aside, through the API (supervisors and admins): failed spool items listed, shown
with a safe preview and retried; dead outbox items retried and sent at once; a second retry is
409 `not_retryable`, an unknown id 404; every retry is audited with the caller as actor."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.storage.tables import AuditEntry, OutboxItem, SpoolEntry
from tests.support.adapter import RecordingAdapter
from tests.web.world import DEAD_ERROR, RAW_MAIL, SPOOL_ERROR, World, call, snapshot

WORLD_SET_ASIDE = True
SPOOL = "/api/v1/spool"


async def retry_audit(world: World) -> list[tuple[str, str, str | None, dict[str, object]]]:
    async with world.hub.db.read() as session:
        rows = await session.scalars(select(AuditEntry).where(
            AuditEntry.action.in_(["spool.retry", "outbox.retry"])).order_by(AuditEntry.id))
        return [(r.actor, r.action, r.target_id, r.detail) for r in rows]


async def test_list_shows_failed_items_by_default(client: TestClient, world: World) -> None:
    status, body, _ = await call(client, "GET", SPOOL, world.tokens["supervisor"])
    assert status == 200
    [item] = body["items"]
    assert item == {"id": world.spool, "channel": "email", "state": "failed", "attempts": 5,
                    "last_error": SPOOL_ERROR, "received_at": item["received_at"],
                    "processed_at": None, "size": len(RAW_MAIL)}
    assert item["received_at"].endswith("Z")
    for query, expected in [("state=pending", []), ("state=done", []),
                            ("state=all&limit=1", [world.spool])]:
        _, page, _ = await call(client, "GET", f"{SPOOL}?{query}", world.tokens["admin"])
        assert [i["id"] for i in page["items"]] == expected, query


async def test_bad_list_parameters_are_refused(client: TestClient, world: World) -> None:
    for query in ("state=dead", "limit=0", "limit=101", "cursor=x"):
        status, body, _ = await call(client, "GET", f"{SPOOL}?{query}",
                                     world.tokens["supervisor"])
        assert status in (400, 422) and body["error"]["message"], query


async def test_detail_has_envelope_and_a_safe_preview(client: TestClient, world: World) -> None:
    status, body, _ = await call(client, "GET", f"{SPOOL}/{world.spool}",
                                 world.tokens["supervisor"])
    assert status == 200
    assert body["envelope"] == {"mail_from": "a@b.example"} and body["message_id"] is None
    assert body["preview_bytes"] == len(RAW_MAIL)
    assert "\x1b" not in body["preview"] and "\\x1b[2Jcleared" in body["preview"]
    assert "My bin was not emptied." in body["preview"] and "\r" not in body["preview"]


async def test_spool_retry_once_then_409(client: TestClient, world: World) -> None:
    url, token = f"{SPOOL}/{world.spool}/retry", world.tokens["supervisor"]
    status, body, _ = await call(client, "POST", url, token)
    assert status == 200
    assert body == {"kind": "spool", "id": world.spool, "previous_error": SPOOL_ERROR,
                    "previous_attempts": 5, "enqueued": False}
    async with world.hub.db.read() as session:
        entry = await session.get_one(SpoolEntry, world.spool)
        assert (entry.state, entry.attempts, entry.last_error) == ("pending", 0, None)
    before = await snapshot(world.hub)
    status, body, _ = await call(client, "POST", url, world.tokens["admin"], {})
    assert status == 409 and body["error"]["code"] == "not_retryable"
    assert "is pending, not failed" in body["error"]["message"]
    assert await snapshot(world.hub) == before
    assert await retry_audit(world) == [
        ("supervisor@city.example", "spool.retry", str(world.spool),
         {"bulk": False, "previous_error": SPOOL_ERROR, "previous_attempts": 5})]


async def test_outbox_retry_sends_at_once_then_409(client: TestClient, world: World,
                                                   adapter: RecordingAdapter) -> None:
    url = f"/api/v1/outbox/{world.outbox}/retry"
    status, body, _ = await call(client, "POST", url, world.tokens["admin"])
    assert status == 200
    assert body == {"kind": "outbox", "id": world.outbox, "previous_error": DEAD_ERROR,
                    "previous_attempts": 3, "enqueued": True}
    await world.hub.jobs.drain()  # the job it was handed to, not the sweeper (not running)
    [sent] = adapter.sent
    assert sent.body == "Your bill is corrected."
    async with world.hub.db.read() as session:
        assert (await session.get_one(OutboxItem, world.outbox)).state == "sent"
    status, body, _ = await call(client, "POST", url, world.tokens["supervisor"])
    assert status == 409 and body["error"]["code"] == "not_retryable"
    [(actor, action, target, detail)] = await retry_audit(world)
    assert (actor, action, target) == ("admin@city.example", "outbox.retry", str(world.outbox))
    assert detail["previous_error"] == DEAD_ERROR and detail["previous_attempts"] == 3


async def test_unknown_ids_are_404(client: TestClient, world: World) -> None:
    before = await snapshot(world.hub)
    for method, path in [("GET", f"{SPOOL}/424242"), ("POST", f"{SPOOL}/424242/retry"),
                         ("POST", "/api/v1/outbox/424242/retry")]:
        status, body, _ = await call(client, method, path, world.tokens["supervisor"])
        assert status == 404 and body["error"]["code"] == "not_found", path
        assert "424242" in body["error"]["message"]
    assert await snapshot(world.hub) == before and await retry_audit(world) == []


async def test_retry_takes_no_fields(client: TestClient, world: World) -> None:
    status, body, _ = await call(client, "POST", f"{SPOOL}/{world.spool}/retry",
                                 world.tokens["supervisor"], {"all": True})
    assert status == 400 and body["error"]["code"] == "unknown_field"
