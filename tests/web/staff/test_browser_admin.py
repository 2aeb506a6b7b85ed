"""axe-core in a real browser on what the conversation actions, the bulk actions and the
administration added: the conversation page with its manage forms, the list with its filters
and checkboxes, a bulk summary, a staff member's page (with a new token shown), the queues and
the rule set. Slow (a browser): marked slow_e2e."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from hub.app import Hub
from hub.staff import find_staff
from tests.web.staff.desk import ADMIN, AGENT, Desk
from tests.web.staff.test_browser import axe_violations, sign_in_by_keyboard

pytestmark = pytest.mark.slow_e2e


async def test_axe_finds_no_violations_on_actions_and_admin_pages(page: Page, desk: Desk,
                                                                  hub: Hub) -> None:
    async with hub.db.read() as session:
        agent = await find_staff(session, AGENT)
        assert agent is not None
    await sign_in_by_keyboard(page, ADMIN)
    await page.goto(f"/staff/conversations/{desk.conv}")
    await page.fill("#tags-add", "lamp, elm")
    await page.get_by_role("button", name="Add tags", exact=True).click()
    await expect(page.get_by_role("button", name="Remove tag elm")).to_be_visible()
    assert await axe_violations(page) == []
    await page.goto("/staff/?tag=lamp")
    await page.check(f"#select-{desk.conv}")
    assert await axe_violations(page) == []
    await page.get_by_role("button", name="Apply", exact=True).click()
    await expect(page.locator("h1")).to_have_text("Bulk action: claim")
    assert await axe_violations(page) == []
    await page.goto(f"/staff/admin/staff/{agent.id}")
    await page.get_by_role("button", name="Create an API token").click()
    await expect(page.locator("#new-token")).to_be_visible()
    assert await axe_violations(page) == []
    for path, heading in (("/staff/admin/queues", "Queues"), ("/staff/admin/rules", "Rule set")):
        await page.goto(path)
        await expect(page.locator("h1")).to_have_text(heading)
        assert await axe_violations(page) == [], path
