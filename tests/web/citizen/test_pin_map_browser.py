"""The pin map on a form's location field with `[citizen] map_tiles_url` (an on-premise tile
server: here a local stand-in), in a real Chromium: tiles come from that server only (the
form page's CSP names its origin), the arrow keys move the place under the pin and fill the
coordinates, + zooms, a click recentres, and axe-core finds nothing. Without JavaScript the
map stays hidden and the typed fields work."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, expect

from tests.web.staff.desk import PNG
from tests.web.staff.test_browser import axe_violations, tab_to

pytestmark = pytest.mark.slow_e2e
CENTER = (40.7128, -74.006)


@pytest.fixture
def tile_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  tile_port: int) -> dict[str, dict[str, object]]:
    settings_data["citizen"] = {
        "map_tiles_url": f"http://127.0.0.1:{tile_port}/tiles/{{z}}/{{x}}/{{y}}.png",
        "map_center": list(CENTER), "map_zoom": 15,
        "map_attribution": "Tiles: City GIS <b>office</b>"}
    return settings_data


@pytest.fixture
async def tiles(tile_port: int) -> AsyncIterator[list[str]]:
    """The tile server: every path it was asked for."""
    asked: list[str] = []

    async def tile(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/tiles/{z}/{x}/{y}.png", tile)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", tile_port)
    await site.start()
    yield asked
    await runner.cleanup()


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


async def open_form(browser: Browser, client: TestClient, javascript: bool = True) -> Page:
    context = await browser.new_context(base_url=str(client.make_url("/")),
                                        java_script_enabled=javascript,
                                        extra_http_headers={"Accept-Language": "en"})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    await page.goto("/forms/pothole")
    return page


async def test_the_pin_map_by_keyboard_and_pointer(browser: Browser, client: TestClient,
                                                   tiles: list[str], tile_port: int) -> None:
    response = await client.get("/forms/pothole")
    assert f"img-src 'self' http://127.0.0.1:{tile_port}" in response.headers[
        "Content-Security-Policy"]
    assert "Tiles: City GIS &lt;b&gt;office&lt;/b&gt;" in await response.text()
    page = await open_form(browser, client)
    view = page.locator(".pin-map")
    await expect(view).to_be_visible()
    # The tile under the pin (x 9647, y 12320 at zoom 15 for the centre) is among those shown.
    under_pin = f"http://127.0.0.1:{tile_port}/tiles/15/9647/12320.png"
    await expect(page.locator(f'.pin-map img[src="{under_pin}"]')).to_have_count(1)
    await eventually(lambda: len(tiles) > 0)
    assert all(path.startswith("/tiles/15/") for path in tiles)
    await expect(page.locator("#f-where-lat")).to_have_value("")  # nothing chosen yet
    assert await axe_violations(page) == []
    await tab_to(page, ".pin-map", limit=60)
    await page.keyboard.press("ArrowRight")
    lat = float(await page.locator("#f-where-lat").input_value())
    long = float(await page.locator("#f-where-long").input_value())
    assert abs(lat - CENTER[0]) < 1e-4 and long > CENTER[1]  # east of where it started
    await page.keyboard.press("+")
    await eventually(lambda: any(p.startswith("/tiles/16/") for p in tiles))
    before = float(await page.locator("#f-where-lat").input_value())
    box = await view.bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 10)  # near the top edge
    assert float(await page.locator("#f-where-lat").input_value()) > before  # moved north
    await expect(page.get_by_role("status").filter(has_text="Map pin at")).to_be_attached()
    assert await axe_violations(page) == []
    await page.context.close()


async def test_without_javascript_the_map_stays_hidden(browser: Browser, client: TestClient,
                                                       tiles: list[str]) -> None:
    page = await open_form(browser, client, javascript=False)
    await expect(page.locator(".pin-map-box")).to_be_hidden()
    await expect(page.locator("#f-where")).to_be_editable()
    assert tiles == []
    await page.context.close()
