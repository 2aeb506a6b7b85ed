"""Collision presence in two real browsers: each agent sees the other viewing the conversation,
sees them typing (and that stops), sees a citizen typing in a web chat, all without reload; the
page with presence shown passes axe. The `a` shortcut, and the workspace and the admin pages in
Spanish passing axe too.

Slow (browsers): marked slow_e2e, so they run on SQLite unless --full.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, expect

from hub.app import Hub
from hub.events import Event
from tests.web.staff.desk import ADMIN, AGENT, PASSWORD, Desk
from tests.web.staff.test_browser import axe_violations

pytestmark = pytest.mark.slow_e2e


async def signed_in_page(browser: Browser, client: TestClient, email: str) -> Page:
    context = await browser.new_context(base_url=str(client.make_url("/")))
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto("/staff/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url("**/staff/")
    return page


@pytest.fixture
async def two(browser: Browser, client: TestClient,
              desk: Desk) -> AsyncIterator[tuple[Page, Page]]:
    """The desk's agent and admin, each signed in in a browser context of their own."""
    agent = await signed_in_page(browser, client, AGENT)
    admin = await signed_in_page(browser, client, ADMIN)
    yield agent, admin
    for page in (agent, admin):
        await page.context.close()


async def open_live(page: Page, conversation: int) -> None:
    await page.goto(f"/staff/conversations/{conversation}")
    await expect(page.locator("html")).to_have_attribute("data-live", "ready")


async def test_colleagues_see_each_other_viewing_and_typing(
        two: tuple[Page, Page], desk: Desk, hub: Hub) -> None:
    agent, admin = two
    await open_live(agent, desk.conv)
    await open_live(admin, desk.conv)
    await expect(agent.locator("#collision")).to_have_text("Ada Admin is viewing")
    await expect(admin.locator("#collision")).to_have_text("Alex Agent is viewing")
    await expect(admin.locator("#collision")).to_have_attribute("aria-live", "polite")
    assert await axe_violations(admin) == []
    await agent.locator("#reply-body").press_sequentially("We are on it")
    await expect(admin.locator("#collision")).to_have_text("Alex Agent is typing")
    await agent.locator("#reply-body").blur()  # stopped typing: back to viewing
    await expect(admin.locator("#collision")).to_have_text("Alex Agent is viewing")
    await admin.evaluate("window.stillTheSamePage = true")
    await agent.goto("/staff/")  # left the conversation
    await expect(admin.locator("#collision")).to_have_text("")
    hub.events.publish(Event("citizen.typing", desk.conv, "roads", {"on": True}))
    await expect(admin.locator("#collision")).to_have_text("The citizen is typing")
    hub.events.publish(Event("citizen.typing", desk.conv, "roads", {"on": False}))
    await expect(admin.locator("#collision")).to_have_text("")
    assert await admin.evaluate("window.stillTheSamePage === true")


async def test_a_focuses_the_assign_control_and_the_help_lists_it(
        two: tuple[Page, Page], desk: Desk) -> None:
    agent, _ = two
    await open_live(agent, desk.conv)
    await agent.keyboard.press("a")
    await expect(agent.locator("#assign-staff")).to_be_focused()
    await agent.locator("#assign-staff").blur()
    await agent.keyboard.press("?")
    await expect(agent.get_by_role("dialog")).to_contain_text("Assign the conversation")


async def test_the_workspace_in_spanish_passes_axe_with_a_conversation_open(
        two: tuple[Page, Page], desk: Desk) -> None:
    agent, admin = two
    await agent.select_option("#language", "es")
    await agent.get_by_role("button", name="Save").click()
    await expect(agent.locator("html")).to_have_attribute("lang", "es")
    await open_live(agent, desk.conv)
    await open_live(admin, desk.conv)  # a colleague viewing: the presence line shows
    await expect(agent.locator("#collision")).to_have_text(
        "Ada Admin está viendo esta conversación")
    await expect(agent.locator("#timeline-heading")).to_have_text("Línea de tiempo")
    await expect(agent.get_by_role("button", name="Cerrar sesión")).to_be_visible()
    assert await axe_violations(agent) == []
    await expect(admin.locator("html")).to_have_attribute("lang", "en")  # the admin's own


async def test_the_admin_pages_in_spanish_pass_axe(two: tuple[Page, Page], desk: Desk) -> None:
    _, admin = two
    await admin.select_option("#language", "es")
    await admin.get_by_role("button", name="Save").click()
    await expect(admin.locator("html")).to_have_attribute("lang", "es")
    for path, heading in (("/staff/admin/staff", "Cuentas del personal"),
                          ("/staff/admin/tokens", "Tokens de API"),
                          ("/staff/admin/queues", "Colas"),
                          ("/staff/admin/rules", "Conjunto de reglas")):
        await admin.goto(path)
        await expect(admin.locator("h1")).to_have_text(heading)
        assert await axe_violations(admin) == [], path


async def test_typing_says_whether_it_is_the_reply_or_a_note(
        two: tuple[Page, Page], desk: Desk, hub: Hub) -> None:
    """Typing in the reply is `reply: true` (a web chat visitor sees "is typing"); typing a note
    is not, so no citizen ever hears of an internal note being written."""
    agent, _ = two
    heard = hub.events.subscribe()
    try:
        await open_live(agent, desk.conv)
        await agent.locator("#note-body").press_sequentially("Call the crew")
        await agent.locator("#note-body").blur()
        await agent.wait_for_timeout(3500)  # past the typing repeat: the next one is sent
        await agent.locator("#reply-body").press_sequentially("On our way")
        found: list[bool] = []
        for _ in range(200):
            while not heard.empty():
                event = heard.get_nowait()
                if event.kind == "staff.typing" and event.data["on"]:
                    found.append(event.data["reply"])
            if len(found) >= 2:
                break
            await agent.wait_for_timeout(50)
        assert found[:2] == [False, True]
    finally:
        hub.events.unsubscribe(heard)
