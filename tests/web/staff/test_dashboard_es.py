"""The dashboard, its sidebar entry and the timeline's delivery status words in the staff
member's language (Spanish here): server-rendered texts, the charts' titles and tables, the
words live.js announces, and axe with 0 violations on the Spanish dashboard."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Page, expect
from sqlalchemy import update

from hub.app import Hub
from hub.storage.tables import Staff
from tests.web.staff.desk import ADMIN, AGENT, Desk, sign_in
from tests.web.staff.test_browser import axe_violations, sign_in_by_keyboard, tab_to
from tests.web.staff.test_dashboard import OCTOBER, october


async def speaks_spanish(hub: Hub, email: str) -> None:
    async with hub.db.transaction() as session:
        await session.execute(update(Staff).where(Staff.email == email).values(language="es"))


async def test_the_dashboard_and_its_link_are_in_spanish(client: TestClient, desk: Desk,
                                                         hub: Hub) -> None:
    await october(hub)
    await speaks_spanish(hub, ADMIN)
    await sign_in(client, ADMIN)
    workspace = await (await client.get("/staff/")).text()
    assert "<h2>Cifras</h2>" in workspace
    assert '<a href="/staff/dashboard">Panel de indicadores</a>' in workspace
    page = await (await client.get(f"/staff/dashboard?{OCTOBER}")).text()
    assert '<html lang="es">' in page and "<h1>Panel de indicadores</h1>" in page
    assert 'aria-current="page">Panel de indicadores</a>' in page
    for text in ("Dónde esperan ahora los ciudadanos", "Primer día", "Todas las colas",
                 "Solicitudes recibidas por mes (tabla)", "Valoración media",
                 "Respuestas a la encuesta por valoración", "Descargar estas cifras en CSV",
                 "Conversaciones creadas del 2026-10-01 al 2026-10-31 (UTC)"):
        assert text in unescape(page), text
    # The charts' own titles (in the SVG) are translated too; English is gone.
    svg_titles = re.findall(r'<svg [^>]*aria-label="([^"]*)"', page)
    assert any("Solicitudes recibidas por mes" in unescape(t) for t in svg_titles)
    for english in ("Where citizens wait now", "Requests received per month", "First day",
                    "Download these figures", ">none<", "Survey answers"):
        assert english not in page, english
    refused = await (await client.get("/staff/dashboard?from=2026-12-01&to=2026-01-01")).text()
    assert "El primer día debe ser anterior al último" in unescape(refused)


async def test_delivery_status_words_are_in_the_staff_language(client: TestClient, desk: Desk,
                                                               hub: Hub) -> None:
    await speaks_spanish(hub, AGENT)
    token = await sign_in(client, AGENT)
    base = f"/staff/conversations/{desk.conv}"
    sent = await client.post(f"{base}/reply", data={"body": "Lo arreglamos hoy",
                                                    "channel": "email", "csrf": token},
                             allow_redirects=False)
    assert sent.status == 303
    await hub.jobs.drain()
    page = await (await client.get(base)).text()
    assert '<span class="delivery" data-status="sent">' in page  # the CSS hook stays English
    assert '<span class="status-value">enviada</span>' in page
    words = re.search(r"data-delivery-words='([^']*)'", page)
    assert words is not None
    assert json.loads(unescape(words.group(1)))["delivered"] == "entregada"


@pytest.mark.slow_e2e
async def test_the_spanish_dashboard_by_keyboard_with_no_axe_violations(
        page: Page, desk: Desk, hub: Hub) -> None:
    await october(hub)
    await speaks_spanish(hub, ADMIN)
    await sign_in_by_keyboard(page, ADMIN)
    await tab_to(page, 'a[href="/staff/dashboard"]')
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/staff/dashboard")
    await expect(page.locator("h1")).to_have_text("Panel de indicadores")
    assert await page.get_attribute("html", "lang") == "es"
    assert await axe_violations(page) == []
    await page.fill("#from", "2026-10-01")
    await page.fill("#to", "2026-10-31")
    await tab_to(page, "form.filters button")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/staff/dashboard?from=2026-10-01*")
    await expect(page.locator("#by-channel tbody tr")).to_have_count(2)
    await expect(page.locator("#by-channel thead")).to_contain_text("Valoración media")
    assert await axe_violations(page) == []
