"""`GET /transparency`: 404 and unlinked while disabled; when enabled, figures per service and
month in the citizen's language, small groups hidden (and said so), nothing a citizen wrote
or gave shown, and axe-core finding nothing in English and Spanish, by keyboard from the
portal's footer."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient
from babel.dates import format_date
from playwright.async_api import Browser, expect
from sqlalchemy import update

from hub.app import Hub
from hub.storage.tables import Conversation
from tests.support.adapter import inbound
from tests.support.figures import MINUTE, Seed, seed
from tests.web.staff.test_browser import axe_violations, tab_to

SECRET_TEXT = "My neighbour Jane Doe at 12 Elm St keeps dumping rubble"
SECRET_SUBJECT = "Private matter about Jane"
SECRET_COMMENT = "Officer Smith was rude <b>to me</b>"
SENDER = "jane.private@example.org"


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  request: pytest.FixtureRequest) -> dict[str, dict[str, object]]:
    if "disabled" not in request.node.name:
        settings_data["transparency"] = {"enabled": True, "min_group": 3}
    return settings_data


def last_month() -> datetime:
    first = datetime.now(UTC).replace(day=1, hour=9, minute=0, second=0, microsecond=0)
    return first - timedelta(days=10)


async def seeded(hub: Hub) -> dict[str, str]:
    """Last month: roads 4 (2 resolved, 2 answers), waste 2, noise 3 (3 answers); and this
    month one real roads request with text, subject and address."""
    when = last_month()
    await seed(hub, [
        Seed(when, queue="roads", first_response=10 * MINUTE, resolved=timedelta(hours=2),
             rating=1, comment=SECRET_COMMENT),
        Seed(when, queue="roads", first_response=20 * MINUTE, resolved=timedelta(hours=4),
             rating=2),
        Seed(when, queue="roads", first_response=30 * MINUTE),
        Seed(when, queue="roads", first_response=40 * MINUTE),
        Seed(when, queue="waste", first_response=MINUTE),
        Seed(when, queue="waste"),
        *[Seed(when, queue="noise", first_response=60 * MINUTE, resolved=timedelta(days=1),
               rating=r) for r in (5, 4, 4)],
    ])
    accepted = await hub.intake.accept(inbound(SENDER, SECRET_TEXT, channel="email",
                                               subject=SECRET_SUBJECT,
                                               sender_name="Jane Private"))
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(
            Conversation.id == accepted.conversation_id).values(queue="roads"))
    form = {"form": {"id": "pothole", "fields": {"description": SECRET_TEXT}}}
    for n in range(3):  # this month, by the pothole form: counted under the form's title
        await hub.intake.accept(inbound(f"form{n}@example.org", SECRET_TEXT, channel="webform",
                                        meta=form))
    return {"reference": accepted.reference, "month": f"{when:%Y-%m}"}


async def test_disabled_is_404_and_unlinked(client: TestClient, hub: Hub) -> None:
    response = await client.get("/transparency")
    assert response.status == 404
    assert 'href="/transparency"' not in await response.text()
    assert 'href="/transparency"' not in await (await client.get("/")).text()


def section(page: str, title: str) -> str:
    found = re.search(rf"<h2 [^>]*>{re.escape(title)}</h2>.*?</section>", page, re.S)
    assert found is not None, title
    return found.group(0)


async def test_figures_with_small_groups_hidden(client: TestClient, hub: Hub) -> None:
    secrets = await seeded(hub)
    portal = await (await client.get("/")).text()
    assert 'href="/transparency"' in portal
    response = await client.get("/transparency", headers={"Accept-Language": "en"})
    assert response.status == 200
    page = await response.text()
    month = format_date(date.fromisoformat(secrets["month"] + "-01"), "LLLL yyyy", locale="en")
    roads = section(page, "Roads and sidewalks")
    cells = re.findall(r"<t[hd][^>]*>\s*(.*?)\s*</t[hd]>",
                       roads.split(f"<th scope=\"row\">{month}</th>")[1].split("</tr>")[0], re.S)
    assert cells[:2] == ["4", "2"]  # received, resolved
    assert cells[2] != "hidden"  # 4 first replies: shown (median 25 minutes)
    assert cells[3:] == ["hidden", "hidden"]  # 2 resolved, 2 answers: fewer than 3
    noise = section(page, "Noise and nuisance")
    assert "4.3 of 5 (3 answers)" in noise and "24 hours" in noise
    assert "Waste collection" not in page  # 2 requests: the month is not shown at all
    assert re.search(r'id="hidden-note">[^<]*: 2\.', page)  # waste's month and this month's roads
    assert "fewer than 3 requests" in page
    pothole = section(page, "Report a pothole or road damage")  # 3 by the form, this month
    this_month = format_date(datetime.now(UTC).date(), "LLLL yyyy", locale="en")
    assert re.search(rf'<th scope="row">{this_month}</th>\s*<td class="number">3</td>', pothole)
    for secret in (SECRET_TEXT, SECRET_SUBJECT, "Officer Smith", SENDER, "Jane Private",
                   secrets["reference"], "Citizen 0"):
        assert secret not in page, secret


async def test_in_spanish_with_local_months_and_numbers(client: TestClient, hub: Hub) -> None:
    secrets = await seeded(hub)
    response = await client.get("/transparency", headers={"Accept-Language": "es"})
    page = await response.text()
    assert '<html lang="es">' in page
    assert "<h1>Nuestras cifras</h1>" in page
    month = format_date(date.fromisoformat(secrets["month"] + "-01"), "LLLL yyyy", locale="es")
    assert f'<th scope="row">{month}</th>' in page
    assert "4,3 de 5 (3 valoraciones)" in page and "oculto" in page
    assert ">Avisar de un bache o un daño en la calzada</h2>" in page  # the form's title


@pytest.mark.slow_e2e
async def test_axe_finds_nothing_in_english_and_spanish(browser: Browser, client: TestClient,
                                                        hub: Hub) -> None:
    await seeded(hub)
    for language, name in (("en", "Our figures"), ("es", "Nuestras cifras")):
        context = await browser.new_context(base_url=str(client.make_url("/")), locale=language,
                                            extra_http_headers={"Accept-Language": language})
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await page.goto("/")
        await tab_to(page, 'a[href="/transparency"]', limit=80)
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/transparency")
        await expect(page.locator("h1")).to_have_text(name)
        assert await axe_violations(page) == [], language
        await context.close()


async def test_figures_are_computed_once_for_a_while(client: TestClient, hub: Hub) -> None:
    await seeded(hub)
    first = await (await client.get("/transparency")).text()
    await seed(hub, [Seed(last_month(), queue="waste") for _ in range(5)])
    assert await (await client.get("/transparency")).text() == first  # cached
    assert "Waste collection" not in first
