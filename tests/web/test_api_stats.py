"""`GET /api/v1/stats` and `/api/v1/stats.csv`: supervisors only, figures of hub.stats over the
asked range and filters, errors in the API's shape, and both in the OpenAPI document."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient

from hub.app import Hub
from tests.support.adapter import inbound
from tests.support.figures import MINUTE, Seed, seed
from tests.web.world import World, call

OCT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
OCTOBER = "from=2026-10-01&to=2026-10-31"


async def seeded(hub: Hub) -> None:
    await seed(hub, [Seed(OCT, first_response=10 * MINUTE, resolved=timedelta(hours=2),
                          rating=5),
                     Seed(OCT, first_response=30 * MINUTE),
                     Seed(OCT, channel="sms", queue="taxes", rating=2, resolved=MINUTE)])


async def test_supervisor_reads_the_figures(client: TestClient, world: World) -> None:
    await seeded(world.hub)
    status, body, headers = await call(client, "GET", f"/api/v1/stats?{OCTOBER}",
                                       world.tokens["supervisor"])
    assert status == 200, body
    assert (body["from"], body["to"], body["queue"], body["channel"]) == (
        "2026-10-01", "2026-10-31", None, None)
    items = {(i["service"], i["channel"]): i for i in body["items"]}
    assert set(items) == {("roads", "email"), ("taxes", "sms")}
    roads = items["roads", "email"]
    assert (roads["month"], roads["received"], roads["resolved"]) == ("2026-10", 2, 1)
    assert roads["first_response_median_seconds"] == 1200.0
    assert roads["first_response_p90_seconds"] == 1800.0
    assert (roads["surveys"], roads["satisfaction_mean"]) == (1, 5.0)
    assert [t["channel"] for t in body["totals"]] == ["all", "all"]
    assert headers["Cache-Control"] == "no-store"


async def test_filters_and_admins(client: TestClient, world: World) -> None:
    await seeded(world.hub)
    _, body, _ = await call(client, "GET", f"/api/v1/stats?{OCTOBER}&channel=sms",
                            world.tokens["admin"])
    assert [(i["service"], i["received"], i["satisfaction_mean"]) for i in body["items"]] == [
        ("taxes", 1, 2.0)]
    _, body, _ = await call(client, "GET", f"/api/v1/stats?{OCTOBER}&queue=nowhere",
                            world.tokens["supervisor"])
    assert (body["items"], body["totals"]) == ([], [])


async def test_default_range_counts_this_month(client: TestClient, world: World) -> None:
    _, body, _ = await call(client, "GET", "/api/v1/stats", world.tokens["supervisor"])
    month = datetime.now(UTC).strftime("%Y-%m")
    assert sum(t["received"] for t in body["totals"] if t["month"] == month) == 3  # the world's


async def test_agents_are_refused(client: TestClient, world: World) -> None:
    for path in ("/api/v1/stats", "/api/v1/stats.csv"):
        status, body, _ = await call(client, "GET", path, world.tokens["agent"])
        assert status == 403, path
        assert body["error"]["code"]
        status, _, _ = await call(client, "GET", path)
        assert status == 401


async def test_bad_queries_are_api_errors(client: TestClient, world: World) -> None:
    token = world.tokens["supervisor"]
    cases = {"from=2026-11-01&to=2026-10-01": 422, "from=yesterday": 422,
             "channel=fax": 422, "color=red": 400, "from=1990-01-01&to=2026-01-01": 422}
    for query, expected in cases.items():
        status, body, _ = await call(client, "GET", f"/api/v1/stats?{query}", token)
        assert status == expected, (query, body)
        assert set(body["error"]) == {"code", "message"}


async def test_csv_export(client: TestClient, world: World) -> None:
    await seeded(world.hub)
    status, data, headers = await call(client, "GET", f"/api/v1/stats.csv?{OCTOBER}",
                                       world.tokens["supervisor"])
    assert status == 200
    assert headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == (
        'attachment; filename="stats-2026-10-01-2026-10-31.csv"')
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [(r["service"], r["channel"], r["received"]) for r in rows] == [
        ("roads", "email", "2"), ("taxes", "sms", "1"), ("roads", "all", "2"),
        ("taxes", "all", "1")]


async def test_openapi_lists_both(client: TestClient, world: World) -> None:
    _, document, _ = await call(client, "GET", "/api/v1/openapi.json")
    stats = document["paths"]["/api/v1/stats"]["get"]
    assert {p["name"] for p in stats["parameters"]} >= {"from", "to", "queue", "channel"}
    assert "text/csv" in document["paths"]["/api/v1/stats.csv"]["get"]["responses"]["200"][
        "content"]


async def test_by_form(client: TestClient, world: World) -> None:
    form = {"form": {"id": "pothole", "fields": {}}}
    await world.hub.intake.accept(inbound("f@example.org", "A hole", channel="webform",
                                          meta=form))
    token = world.tokens["supervisor"]
    _, by_form, _ = await call(client, "GET", "/api/v1/stats?by=form", token)
    _, by_queue, _ = await call(client, "GET", "/api/v1/stats", token)
    assert "form:pothole" in {t["service"] for t in by_form["totals"]}
    assert not any(t["service"].startswith("form:") for t in by_queue["totals"])
    status, _, _ = await call(client, "GET", "/api/v1/stats?by=tag", token)
    assert status == 422
