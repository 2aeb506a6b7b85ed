"""The sidebar's administration links (admins get every admin page, others none they cannot
open), the API tokens page, the shortcuts dialog listing `a`, and the workspace's language:
each staff member's own choice (a CSRF-protected form), `<html lang>` following it, Spanish
texts from the Babel catalog."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.app import Hub
from hub.auth import create_token
from hub.staff import find_staff
from hub.storage.tables import Staff
from tests.web.staff.desk import ADMIN, AGENT, Desk, sign_in

ADMIN_PAGES = ("/staff/admin/staff", "/staff/admin/tokens", "/staff/admin/queues",
               "/staff/admin/rules")
HREF_RE = re.compile(r'<nav class="sidebar".*?</nav>', re.S)


def sidebar_links(html: str) -> list[str]:
    found = HREF_RE.search(html)
    assert found is not None
    return re.findall(r'<a href="([^"]+)"', found.group(0))


async def test_admins_get_links_to_every_admin_page_and_each_opens(
        client: TestClient, desk: Desk) -> None:
    await sign_in(client, ADMIN)
    links = sidebar_links(await (await client.get("/staff/")).text())
    assert [link for link in links if link.startswith("/staff/admin/")] == list(ADMIN_PAGES)
    for path in ADMIN_PAGES:
        page = await client.get(path)
        assert page.status == 200, path
        assert f'<a href="{path}" aria-current="page">' in await page.text()


async def test_an_agents_sidebar_links_only_to_what_they_may_open(
        client: TestClient, desk: Desk) -> None:
    await sign_in(client, AGENT)
    links = sidebar_links(await (await client.get("/staff/")).text())
    assert links and not [link for link in links if "/admin/" in link]
    for link in links:
        assert (await client.get(link.replace("&amp;", "&"))).status == 200, link
    assert (await client.get("/staff/admin/tokens")).status == 404


async def test_the_tokens_page_lists_every_token_with_its_owner(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    async with hub.db.transaction() as session:
        agent = await find_staff(session, AGENT)
        assert agent is not None
        secret = await create_token(session, agent)
    await sign_in(client, ADMIN)
    page = await (await client.get("/staff/admin/tokens")).text()
    assert f'<a href="/staff/admin/staff/{agent.id}">{AGENT}</a>' in page
    assert secret[:12] in page and secret not in page  # the prefix only, never the token


async def test_the_shortcuts_dialog_lists_a_for_assign(client: TestClient, desk: Desk) -> None:
    await sign_in(client, AGENT)
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assert "<dt><kbd>a</kbd></dt><dd>Assign the conversation" in page
    assert 'id="assign-staff"' in page  # what `a` focuses (keys.js)


async def test_each_staff_member_chooses_their_language(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client, AGENT)
    page = await (await client.get("/staff/")).text()
    assert '<html lang="en">' in page and "Sign out" in page
    refused = await client.post("/staff/language", data={"language": "es", "next": "/staff/"},
                                allow_redirects=False)
    assert refused.status == 403  # no CSRF token
    unknown = await client.post("/staff/language", data={"language": "xx", "csrf": token},
                                allow_redirects=False)
    assert unknown.status == 400
    chosen = await client.post("/staff/language", allow_redirects=False, data={
        "language": "es", "csrf": token, "next": "https://elsewhere.example/staff/"})
    assert chosen.status == 303 and chosen.headers["Location"] == "/staff/"
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assert '<html lang="es">' in page
    assert "Cerrar sesión" in page and "Línea de tiempo" in page and "Sign out" not in page
    async with hub.db.read() as session:
        languages = dict((await session.execute(select(Staff.email, Staff.language))).all())
    assert languages[AGENT] == "es" and languages[ADMIN] is None
    other = await client.post("/staff/logout", data={"csrf": token}, allow_redirects=False)
    assert other.status == 303
    await sign_in(client, ADMIN)  # the admin's own choice: still the default
    assert '<html lang="en">' in await (await client.get("/staff/")).text()
