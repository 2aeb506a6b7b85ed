"""The supervisors' dashboard: only supervisors and admins (agents: 404, no sidebar link), where
citizens wait now, the figures as charts (inline SVG without script or inline style) with the
same figures in tables, the CSV export with the session, and a range it cannot use."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect

from hub.app import Hub
from hub.staff import add_staff
from tests.support.figures import MINUTE, Seed, seed
from tests.web.staff.desk import ADMIN, Desk, password_hash, sign_in
from tests.web.staff.test_browser import axe_violations, sign_in_by_keyboard, tab_to

SUPERVISOR = "sup@city.example"
OCT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
OCTOBER = "from=2026-10-01&to=2026-10-31"


async def add_supervisor(hub: Hub) -> None:
    async with hub.db.transaction() as session:
        staff = await add_staff(session, SUPERVISOR, name="Sam Supervisor", role="supervisor",
                                queues=[])
        staff.password_hash = password_hash()


async def october(hub: Hub) -> None:
    await seed(hub, [Seed(OCT, first_response=90 * MINUTE, resolved=timedelta(hours=5),
                          rating=4),
                     Seed(OCT, first_response=30 * MINUTE, rating=2),
                     Seed(OCT, queue="taxes", channel="sms")])


async def test_agents_get_404_and_no_link(client: TestClient, desk: Desk) -> None:
    await sign_in(client)
    for path in ("/staff/dashboard", "/staff/dashboard.csv"):
        response = await client.get(path)
        assert response.status == 404, path
    page = await (await client.get("/staff/")).text()
    assert 'href="/staff/dashboard"' not in page


async def test_supervisor_sees_waiting_charts_and_tables(client: TestClient, desk: Desk,
                                                          hub: Hub) -> None:
    await add_supervisor(hub)
    await october(hub)
    await sign_in(client, SUPERVISOR)
    response = await client.get(f"/staff/dashboard?{OCTOBER}")
    assert response.status == 200
    page = await response.text()
    assert 'href="/staff/dashboard"' in (await (await client.get("/staff/")).text())
    waiting = re.search(r'<tr data-queue="roads">(.*?)</tr>', page, re.S)
    assert waiting is not None
    cells = re.findall(r"<td>(.*?)</td>", waiting.group(1), re.S)
    assert cells[:2] == ["2", "2"]  # the desk's mail and an October one, both open
    assert "min" in cells[2] or " h" in cells[2]
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(svgs) == 5
    for svg in svgs:
        assert 'role="img"' in svg and "aria-label=" in svg
        assert "<script" not in svg and "<style" not in svg and " style=" not in svg
    # The same figures as the charts, in tables: 2 received in roads, median first response 1 h.
    received = re.search(r"Requests received per month \(table\).*?</table>", page, re.S)
    assert received is not None
    assert re.search(r'<th scope="row">2026-10</th><td class="number">2</td>'
                     r'<td class="number">1</td>', received.group(0))
    first = re.search(r"Median first response per month \(hours\) \(table\).*?</table>",
                      page, re.S)
    assert first is not None and '<td class="number">1</td>' in first.group(0)
    assert "3 h 0 min" not in page and "1 h" in page  # by channel: durations for people
    assert 'href="/staff/dashboard.csv?from=2026-10-01&amp;to=2026-10-31"' in page


async def test_csv_export_with_the_session(client: TestClient, desk: Desk, hub: Hub) -> None:
    await october(hub)
    await sign_in(client, ADMIN)
    response = await client.get(f"/staff/dashboard.csv?{OCTOBER}&queue=roads")
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(r["service"], r["channel"], r["received"], r["satisfaction_mean"])
            for r in rows] == [("roads", "email", "2", "3.0"), ("roads", "all", "2", "3.0")]


async def test_a_range_it_cannot_use_is_said(client: TestClient, desk: Desk) -> None:
    await sign_in(client, ADMIN)
    response = await client.get("/staff/dashboard?from=2026-12-01&to=2026-01-01")
    page = await response.text()
    assert response.status == 200
    assert 'role="alert"' in page and "must come before" in page
    response = await client.get("/staff/dashboard?from=soon")
    assert "could not be used" in await response.text()


@pytest.mark.slow_e2e
async def test_dashboard_by_keyboard_with_no_axe_violations(page: Page, desk: Desk,
                                                            hub: Hub) -> None:
    await october(hub)
    await sign_in_by_keyboard(page, ADMIN)
    await tab_to(page, 'a[href="/staff/dashboard"]')
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/staff/dashboard")
    await expect(page.locator("h1")).to_have_text("Dashboard")
    assert await axe_violations(page) == []
    await page.fill("#from", "2026-10-01")
    await page.fill("#to", "2026-10-31")
    await tab_to(page, "form.filters button")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/staff/dashboard?from=2026-10-01*")
    await expect(page.locator("#by-channel tbody tr")).to_have_count(2)
    # The charts are drawn (bars have a size) with the static style sheet, no inline style.
    bars = page.locator("svg.pygal-chart .bar rect")
    assert await bars.count() >= 2
    box = await bars.first.bounding_box()
    assert box is not None and box["height"] > 0
    assert await axe_violations(page) == []
