"""The reply box, the contact panel and email HTML in a real headless Chromium: a reply held by
the collision check and sent anyway, a canned response inserted (button and "/"), axe-core
finding nothing on a conversation with its contact panel and an HTML email open, and an HTML
email's markup never running nor calling the remote host until staff load its images.

Slow (a browser each): marked slow_e2e, so they run on SQLite unless --full.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, Request, expect

from hub import canned, service
from hub.app import Hub
from hub.staff import find_staff
from tests.web.staff.desk import ADMIN, REMOTE, Desk, add_html_mail
from tests.web.staff.test_browser import axe_violations, sign_in_by_keyboard

pytestmark = pytest.mark.slow_e2e


async def _admin(hub: Hub) -> service.Staff:
    async with hub.db.read() as session:
        admin = await find_staff(session, ADMIN)
    assert admin is not None
    return admin


async def test_a_held_reply_shows_the_news_and_sends_anyway(page: Page, desk: Desk,
                                                            hub: Hub) -> None:
    await sign_in_by_keyboard(page)
    await page.goto(f"/staff/conversations/{desk.conv}")
    await page.locator("#reply-body").fill("We will look at it.")
    await service.reply(hub.db, await _admin(hub), desk.conv, "A colleague was faster.",
                        channels=hub.adapters, submit_delivery=hub.jobs.submit_delivery,
                        publish=hub.events.publish)
    await page.get_by_role("button", name="Send reply").click()
    await expect(page.locator("#conflict")).to_contain_text("new messages arrived")
    await expect(page.locator(".message.new")).to_contain_text("A colleague was faster.")
    await expect(page.locator("#reply-body")).to_have_value("We will look at it.")
    await page.get_by_role("button", name="Send anyway").click()
    await page.wait_for_url(f"**/staff/conversations/{desk.conv}?done=reply*")
    await expect(page.locator(".message.outbound").last).to_contain_text("We will look at it.")


async def test_a_canned_response_goes_in_where_the_cursor_is(page: Page, desk: Desk,
                                                             hub: Hub) -> None:
    async with hub.db.transaction() as session:
        await canned.create(session, await _admin(hub), canned.CannedIn(
            "Greeting", "Dear {{ citizen_name }},", "roads"))
    await sign_in_by_keyboard(page)
    await page.goto(f"/staff/conversations/{desk.conv}")
    await page.evaluate("window.stillTheSamePage = true")
    body = page.locator("#reply-body")
    await body.fill("Hi")
    await page.get_by_role("button", name="Insert").click()
    await expect(body).to_have_value("Hi\nDear Ana Citizen,")
    await expect(body).to_be_focused()
    await body.fill("")
    await body.type("/gree")
    await expect(page.locator("#canned-match")).to_contain_text("Greeting")
    await body.press("Enter")
    await expect(body).to_have_value("Dear Ana Citizen,")
    assert await page.evaluate("window.stillTheSamePage === true")


async def test_axe_finds_nothing_with_the_contact_panel_and_an_html_email(
        page: Page, desk: Desk, hub: Hub) -> None:
    mail = await add_html_mail(hub)
    await sign_in_by_keyboard(page, ADMIN)
    await page.goto(f"/staff/conversations/{mail.conv}?html={mail.message}")
    await expect(page.locator("#contact")).to_contain_text("opted out")
    await expect(page.frame_locator("iframe.mail-frame").locator("b")).to_have_text("team")
    assert await axe_violations(page) == []


async def test_html_email_runs_nothing_and_calls_the_remote_host_only_when_asked(
        page: Page, desk: Desk, hub: Hub) -> None:
    mail = await add_html_mail(hub)
    dialogs: list[str] = []
    remote: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    def watch(request: Request) -> None:
        if REMOTE in request.url:
            remote.append(request.url)

    page.on("request", watch)
    await sign_in_by_keyboard(page)
    await page.goto(f"/staff/conversations/{mail.conv}")
    await page.get_by_role("link", name="Show the HTML version").click()
    frame = page.frame_locator("iframe.mail-frame")
    await expect(frame.locator("p").first).to_contain_text("the lamp is out")
    await page.wait_for_timeout(300)
    assert dialogs == [] and remote == []
    async with page.expect_request(lambda request: REMOTE in request.url):
        await page.get_by_role("link", name="Load remote images").click()
    await expect(frame.locator('img[alt="tracker"]')).to_have_attribute(
        "src", f"http://{REMOTE}/track.png")
    assert dialogs == [] and remote
