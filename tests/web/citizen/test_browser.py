"""The citizen pages in a real headless Chromium (Debian's, through Playwright): the pothole
form with a photo in English by keyboard alone with JavaScript on, then in Spanish and English
with JavaScript on and off (a failed submit first: the error summary takes the focus and each
link focuses its field),
a staff reply through the API showing on the tracking page, and axe-core finding nothing on
every page in both languages (the satisfaction survey too: empty, failed, answered).

Slow (a browser each): marked slow_e2e, so they run on SQLite unless --full.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from hub.app import Hub
from hub.forms import live_forms
from hub.storage.tables import Survey
from tests.web.citizen.citizen import (
    PNG,
    POTHOLE,
    conversation_id,
    limit_rate,
    post_form,
    staff_call,
    staff_token,
)
from tests.web.staff.test_browser import axe_violations, tab_to

pytestmark = pytest.mark.slow_e2e
PHOTO = {"name": "hole.png", "mimeType": "image/png", "buffer": PNG}
SCRIPT = '<script>alert("x")</script>'
Opener = Callable[..., Any]


@pytest.fixture
def opener(browser: Browser, client: TestClient) -> Opener:
    @asynccontextmanager
    async def open_page(language: str = "en", javascript: bool = True) -> AsyncIterator[Page]:
        context = await browser.new_context(
            base_url=str(client.make_url("/")), java_script_enabled=javascript,
            locale=language, extra_http_headers={"Accept-Language": language})
        page = await context.new_page()
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            await context.close()

    return open_page


async def test_the_pothole_form_by_keyboard_in_english(opener: Opener, client: TestClient,
                                                       hub: Hub) -> None:
    async with opener("en") as page:
        await page.goto("/")
        await tab_to(page, 'a[href="/forms/pothole"]')
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/forms/pothole")
        await tab_to(page, "#f-where")
        await page.keyboard.type("12 Elm St")
        await tab_to(page, "#f-hazard")
        await page.keyboard.press("Space")
        await tab_to(page, "#f-description")
        await page.keyboard.type("A deep hole in the bus lane")
        await page.set_input_files("#f-photo", files=[PHOTO])
        await tab_to(page, "#f-email")
        await page.keyboard.type("jane@example.org")
        await tab_to(page, "button[type=submit]")
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/track/*")
        await expect(page.locator("#status")).to_have_text("Received: we are working on it")
        await expect(page.locator(".timeline")).to_contain_text("hole.png")
        reference = page.url.rsplit("/", 1)[1]
        conv = await conversation_id(hub, reference)
        await staff_call(client, await staff_token(hub), f"/api/v1/conversations/{conv}/replies",
                         {"body": "A crew fills it on Monday."})
        await page.reload()
        await expect(page.locator(".message.theirs")).to_contain_text("A crew fills it on Monday.")
        await tab_to(page, "#f-message")
        await page.keyboard.type("Thank you!")
        await tab_to(page, "form.add-message button[type=submit]", limit=5)
        await page.keyboard.press("Enter")
        await page.wait_for_url("**?sent=1#timeline")
        await expect(page.locator(".message.mine").last).to_contain_text("Thank you!")


TEXTS = {  # language -> (the send button, the summary's title, the status, the place's line)
    "es": ("Enviar solicitud", "Hay un problema", "Recibida: estamos trabajando en ella",
           "¿Dónde está el daño?: Calle Mayor 3"),
    "en": ("Send request", "There is a problem", "Received: we are working on it",
           "Where is the damage?: Calle Mayor 3"),
}


@pytest.mark.parametrize(("language", "javascript"), [("es", False), ("es", True),
                                                      ("en", False)])
async def test_a_failed_submit_then_success(opener: Opener, language: str,
                                            javascript: bool) -> None:
    send, problem, status, place = TEXTS[language]
    async with opener(language, javascript=javascript) as page:
        await page.goto("/forms/pothole")
        await expect(page.locator("html")).to_have_attribute("lang", language)
        await page.get_by_role("button", name=send).click()
        summary = page.locator(".error-summary")
        await expect(summary).to_contain_text(problem)
        await expect(summary).to_be_focused()  # autofocus: no script needed
        links = summary.locator("a")
        targets = [str(await links.nth(i).get_attribute("href")) for i in range(await links.count())]
        assert targets == ["#f-where", "#f-hazard", "#f-email"]
        for i, target in enumerate(targets):
            await links.nth(i).click()
            await expect(page.locator(target)).to_be_focused()
        await page.fill("#f-where", "Calle Mayor 3")
        await page.check("#f-hazard")
        await page.set_input_files("#f-photo", files=[PHOTO])
        await page.fill("#f-phone", "+34 612 345 678")
        await page.get_by_role("button", name=send).click()
        await page.wait_for_url("**/track/*")
        await expect(page.locator("#status")).to_have_text(status)
        await expect(page.locator(".timeline")).to_contain_text(place)
        await expect(page.locator(".timeline")).to_contain_text("hole.png")


async def axe_pages(page: Page, hub: Hub, reference: str) -> dict[str, list[str]]:
    """axe-core's violations on every citizen page, by page."""
    found: dict[str, list[str]] = {}

    async def check(name: str) -> None:
        found[name] = await axe_violations(page)

    await page.goto("/")
    await check("/")
    for form_id in live_forms(hub.rules):
        await page.goto(f"/forms/{form_id}")
        await check(f"/forms/{form_id}")
        await page.locator("form button[type=submit]").click()
        await expect(page.locator(".error-summary")).to_be_visible()
        await check(f"/forms/{form_id} failed")
    await page.goto(f"/track/{reference}")
    await check("/track")
    await page.goto("/no-such-page")
    await check("404")
    return found


async def test_axe_finds_nothing_on_any_page_in_either_language(
        opener: Opener, client: TestClient, hub: Hub) -> None:
    submitted = await post_form(client, {**POTHOLE, "description": SCRIPT, "name": SCRIPT})
    reference = str(submitted.headers["Location"]).rsplit("/", 1)[1]
    conv = await conversation_id(hub, reference)
    await staff_call(client, await staff_token(hub), f"/api/v1/conversations/{conv}/replies",
                     {"body": "Thank you, we are on it."})
    dialogs: list[str] = []
    for language in ("en", "es"):
        async with opener(language) as page:
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))
            found = await axe_pages(page, hub, reference)
            assert {name: v for name, v in found.items() if v} == {}, language
            await page.goto(f"/track/{reference}")
            await expect(page.locator(".message.mine").first).to_contain_text(SCRIPT)
            assert dialogs == []
    limit_rate(client, 0.5)  # no more tracking pages for now
    for language in ("en", "es"):
        async with opener(language) as page:
            response = await page.goto(f"/track/{reference}")
            assert response is not None and response.status == 429
            assert await axe_violations(page) == []


async def survey_path(client: TestClient, hub: Hub, language: str) -> str:
    """A request filed in `language` and resolved by staff: its survey's path."""
    submitted = await post_form(client, POTHOLE, headers={"Accept-Language": language})
    conv = await conversation_id(hub, str(submitted.headers["Location"]).rsplit("/", 1)[1])
    await staff_call(client, await staff_token(hub, f"{language}@city.example"),
                     f"/api/v1/conversations/{conv}/status", {"status": "resolved"})
    async with hub.db.read() as session:
        token = await session.scalar(select(Survey.token).where(Survey.conversation_id == conv))
    return f"/survey/{token}"


@pytest.mark.parametrize("language", ["en", "es"])
async def test_axe_finds_nothing_on_the_survey(opener: Opener, client: TestClient, hub: Hub,
                                               language: str) -> None:
    path = await survey_path(client, hub, language)
    async with opener(language) as page:
        await page.goto(path)
        assert await page.get_attribute("html", "lang") == language
        assert await axe_violations(page) == [], "the survey"
        await page.locator("form button[type=submit]").click()
        await expect(page.locator(".error-summary")).to_be_focused()
        assert await axe_violations(page) == [], "the survey, failed"
        await page.locator("input[name=rating][value='4']").check()
        await page.locator("#f-comment").fill("Quick and kind")
        await page.locator("form button[type=submit]").click()
        await expect(page.locator("[role=status]")).to_be_visible()
        assert await axe_violations(page) == [], "the thank-you page"
        await page.goto(path)
        await expect(page.locator("form.survey")).to_have_count(0)
        assert await axe_violations(page) == [], "answered already"


async def test_the_portal_fits_a_320_pixel_screen(opener: Opener) -> None:
    async with opener("es") as page:
        await page.set_viewport_size({"width": 320, "height": 640})
        for path in ("/", "/forms/pothole"):
            await page.goto(path)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 320, (path, width)
