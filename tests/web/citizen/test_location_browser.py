""""Use my location" on the pothole form's location field, in a real Chromium: by keyboard it
fills the coordinates from the browser's position (then the request stores them); a refused
position says so and keeps the typed-address path; JavaScript off shows no button; the text is
Spanish on a Spanish page; axe-core finds nothing. Only form pages may ask for the position."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from hub.app import Hub
from hub.storage.tables import Message
from tests.web.staff.test_browser import axe_violations, tab_to

pytestmark = pytest.mark.slow_e2e
HERE = {"latitude": 40.7128, "longitude": -74.006}
Opener = Callable[..., Any]


@pytest.fixture
def opener(browser: Browser, client: TestClient) -> Opener:
    @asynccontextmanager
    async def open_page(language: str = "en", javascript: bool = True,
                        located: bool = True) -> AsyncIterator[Page]:
        context = await browser.new_context(
            base_url=str(client.make_url("/")), java_script_enabled=javascript,
            locale=language, extra_http_headers={"Accept-Language": language},
            geolocation=HERE if located else None,
            permissions=["geolocation"] if located else [])
        page = await context.new_page()
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            await context.close()

    return open_page


async def test_my_location_fills_the_coordinates_by_keyboard(opener: Opener,
                                                             hub: Hub) -> None:
    async with opener() as page:
        await page.goto("/forms/pothole")
        button = page.get_by_role("button", name="Use my location")
        await expect(button).to_be_visible()
        assert await axe_violations(page) == []
        await tab_to(page, "button.locate", limit=60)
        await page.keyboard.press("Enter")
        await expect(page.locator("#f-where-lat")).to_have_value("40.712800")
        await expect(page.locator("#f-where-long")).to_have_value("-74.006000")
        await expect(page.get_by_role("status").filter(
            has_text="Your location was added")).to_be_visible()
        assert await axe_violations(page) == []
        await page.fill("#f-description", "A hole where I stand")
        await page.fill("#f-email", "pin@example.org")
        await page.check("#f-hazard")
        await page.locator("form button[type=submit]").click()
        await page.wait_for_url("**/track/*")
    async with hub.db.read() as session:
        metas = list(await session.scalars(select(Message.meta)))
    assert any("40.7128" in str(meta) and "-74.006" in str(meta) for meta in metas)


async def test_a_refused_position_keeps_the_address_path(opener: Opener) -> None:
    async with opener(located=False) as page:
        await page.goto("/forms/pothole")
        await page.get_by_role("button", name="Use my location").click()
        await expect(page.get_by_role("status").filter(
            has_text="could not be found")).to_be_visible()
        await expect(page.locator("#f-where-lat")).to_have_value("")
        await expect(page.locator("#f-where")).to_be_editable()


async def test_no_button_without_javascript_and_spanish_text(opener: Opener,
                                                              client: TestClient) -> None:
    async with opener(javascript=False) as page:
        await page.goto("/forms/pothole")
        await expect(page.locator("#f-where")).to_be_visible()
        assert await page.locator("button.locate").count() == 0
    async with opener("es") as page:
        await page.goto("/forms/pothole")
        await expect(page.get_by_role("button", name="Usar mi ubicación")).to_be_visible()
        assert await axe_violations(page) == []
    form = await client.get("/forms/pothole")
    portal = await client.get("/")
    assert "geolocation=(self)" in form.headers["Permissions-Policy"]
    assert "geolocation=()" in portal.headers["Permissions-Policy"]
