"""The workspace in a real headless Chromium (Debian's, through Playwright): the main flow by
keyboard alone with the reply's status turning `sent` live, axe-core finding nothing on the
login page, the list and an open conversation, and a citizen's markup never running.

Slow (a browser each): marked slow_e2e, so they run on SQLite unless --full.
"""

from __future__ import annotations

import asyncio

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page, Request, expect

from hub.app import Hub
from tests.support.adapter import inbound
from tests.web.staff.desk import (
    ADMIN,
    AGENT,
    PASSWORD,
    REMOTE,
    Desk,
    GatedAdapter,
)

pytestmark = pytest.mark.slow_e2e


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    settings_data["routing"]["default_queue"] = "roads"  # new conversations land in the list
    return settings_data


async def tab_to(page: Page, selector: str, limit: int = 40) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate(f"document.activeElement?.matches({selector!r}) ?? false"):
            return
    raise AssertionError(f"Tab never reached {selector}")


async def sign_in_by_keyboard(page: Page, email: str = AGENT) -> None:
    await page.goto("/staff/")
    assert page.url.endswith("/staff/login")
    await tab_to(page, "#email")
    await page.keyboard.type(email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/staff/")


async def axe_violations(page: Page) -> list[str]:
    results = await Axe().run(page)
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}"
            for v in results.response["violations"]]


async def test_the_main_flow_by_keyboard_with_a_live_status(page: Page, desk: Desk,
                                                           hub: Hub) -> None:
    await sign_in_by_keyboard(page)
    await tab_to(page, 'a[href="/staff/?queue=roads"]')
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/staff/?queue=roads")
    await expect(page.locator("h1")).to_have_text("All open in roads")
    await tab_to(page, f'a[href="/staff/conversations/{desk.conv}"]')
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/staff/conversations/{desk.conv}")
    await expect(page.locator("html")).to_have_attribute("data-live", "ready")
    email = hub.adapters.get("email")
    assert isinstance(email, GatedAdapter)
    email.gate = asyncio.Event()
    await tab_to(page, "#reply-body")
    await page.keyboard.type("A crew replaces the lamp on Monday.")
    await tab_to(page, "form.compose button[type=submit]", limit=3)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/staff/conversations/{desk.conv}?done=reply*")
    await expect(page.get_by_role("status").first).to_contain_text("Reply queued")
    reply = page.locator(".message.outbound").last
    await expect(reply).to_contain_text("A crew replaces the lamp on Monday.")
    await expect(reply.locator(".status-value")).to_have_text("queued")
    await expect(page.locator("html")).to_have_attribute("data-live", "ready")
    await page.evaluate("window.stillTheSamePage = true")
    email.gate.set()  # the provider takes it: the page hears of it without a reload
    await expect(reply.locator(".status-value")).to_have_text("sent")
    assert await page.evaluate("window.stillTheSamePage === true")


async def test_axe_finds_no_violations(page: Page, desk: Desk) -> None:
    await page.goto("/staff/login")
    assert await axe_violations(page) == []
    await sign_in_by_keyboard(page, ADMIN)
    assert await axe_violations(page) == []
    await page.goto(f"/staff/conversations/{desk.conv}")
    await expect(page.locator(".trace")).to_contain_text("lights-to-roads")
    assert await axe_violations(page) == []
    await page.goto("/staff/admin/staff")
    await expect(page.locator("h1")).to_have_text("Staff accounts")
    assert await axe_violations(page) == []


async def test_a_citizens_markup_never_runs_nor_loads(page: Page, desk: Desk) -> None:
    dialogs: list[str] = []
    remote: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    def watch(request: Request) -> None:
        if REMOTE in request.url or request.url.startswith("javascript:"):
            remote.append(request.url)

    page.on("request", watch)
    await sign_in_by_keyboard(page)
    await page.goto(f"/staff/conversations/{desk.conv}")
    body = page.locator(".message.inbound .message-body").first
    await expect(body).to_contain_text('<script>alert("script")</script>')
    await expect(body).to_contain_text("The streetlight on Elm St is out.")
    await expect(page.locator("h1")).to_contain_text("Streetlight <img src=x")
    assert await page.locator("main img, main script, main a[href^='javascript']").count() == 0
    await page.wait_for_timeout(300)
    assert dialogs == [] and remote == []


async def test_a_new_conversation_appears_in_the_list_without_a_reload(
        page: Page, desk: Desk, hub: Hub) -> None:
    await sign_in_by_keyboard(page)
    await page.goto("/staff/?queue=roads")
    await expect(page.locator("html")).to_have_attribute("data-live", "ready")
    await page.evaluate("window.stillTheSamePage = true")
    roads = page.locator("#sidebar li", has_text="Roads")
    await expect(roads).to_contain_text("1 open, 1 unassigned")
    await hub.intake.accept(inbound("+15550004242", "A tree fell on Oak Avenue"))
    await expect(page.locator("#listing")).to_contain_text("+15550004242")
    await expect(roads).to_contain_text("2 open, 2 unassigned")
    assert await page.evaluate("window.stillTheSamePage === true")


async def test_shortcuts_open_reply_and_send(page: Page, desk: Desk, hub: Hub) -> None:
    await sign_in_by_keyboard(page)
    await page.keyboard.press("?")
    await expect(page.get_by_role("dialog")).to_contain_text("Keyboard shortcuts")
    await page.keyboard.press("Escape")
    await page.keyboard.press("j")
    await expect(page.locator(".conversations a.subject").first).to_be_focused()
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"**/staff/conversations/{desk.conv}")
    await page.keyboard.press("r")
    await expect(page.locator("#reply-body")).to_be_focused()
    await page.keyboard.type("Sent with the keyboard.")
    await page.keyboard.press("Control+Enter")
    await page.wait_for_url(f"**/staff/conversations/{desk.conv}?done=reply*")
    await expect(page.locator(".message.outbound").last).to_contain_text("Sent with the keyboard.")
    await page.keyboard.press("e")
    await page.wait_for_url(f"**/staff/conversations/{desk.conv}?done=resolved*")
    await expect(page.locator("#conversation-facts")).to_contain_text("resolved")
