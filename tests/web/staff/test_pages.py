"""The workspace's pages over HTTP (no browser): the list with its views, filters, search and
pages; a conversation with its timeline (escaped), the "why is this here?" trace and the reply
channels; and the actions, each through hub.service."""

from __future__ import annotations

import asyncio
import html
import io
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from hub import cli
from hub.app import Hub
from hub.auth import verify_password
from hub.config import Settings
from hub.staff import find_staff
from hub.storage.db import Database
from hub.storage.tables import Conversation, Message, WebSession
from hub.web.staff import sessions
from tests.support.adapter import inbound
from tests.support.config_file import config_file
from tests.web.staff.desk import (
    ADMIN,
    AGENT,
    HOSTILE,
    SUBJECT,
    Desk,
    build_desk,
    sign_in,
)


async def _page(client: TestClient, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, path
    return await response.text()


async def test_a_conversation_shows_what_the_citizen_wrote_as_text(client: TestClient,
                                                                   desk: Desk) -> None:
    await sign_in(client)
    page = await _page(client, f"/staff/conversations/{desk.conv}")
    assert "<script>alert" not in page and "onerror=\"alert" not in page
    assert "<img" not in page and 'href="javascript:' not in page
    assert html.escape(HOSTILE, quote=False) in page.replace("&#34;", '"').replace("&#39;", "'")
    assert html.escape(SUBJECT, quote=False) in page.replace("&#34;", '"').replace("&#39;", "'")
    assert "The text part of the email is shown" in page
    assert 'class="badge">email</span>' in page


async def test_the_why_panel_shows_rule_clause_and_value(client: TestClient,
                                                         desk: Desk) -> None:
    await sign_in(client)
    page = await _page(client, f"/staff/conversations/{desk.conv}")
    why = page[page.index("Why is this here?"):]
    assert "lights-to-roads" in why and "rules.toml:12" in why and "Matched" in why
    assert "text.contains" in why and "[&#34;streetlight&#34;]" in why
    assert "&#34;streetlight&#34;" in why and "queue: &#34;roads&#34;" in why
    assert "not considered: a required keyword is absent" in why


async def test_the_reply_offers_the_contacts_channels_opted_out_ones_disabled(
        client: TestClient, desk: Desk) -> None:
    await sign_in(client)
    page = await _page(client, f"/staff/conversations/{desk.conv}")
    email = page[page.index('id="channel-email"') - 80:page.index('id="channel-email"') + 120]
    sms = page[page.index('id="channel-sms"') - 80:page.index('id="channel-sms"') + 120]
    assert "checked" in email and "disabled" not in email
    assert "disabled" in sms and "(opted out: cannot receive)" in page


async def test_reply_note_claim_and_resolve_go_through_the_service(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client)
    base = f"/staff/conversations/{desk.conv}"
    for action, data in (("reply", {"body": "We fix it <today>", "channel": "email"}),
                         ("note", {"body": "Called the crew"}), ("claim", {}),
                         ("status", {"status": "resolved"})):
        response = await client.post(f"{base}/{action}", data={**data, "csrf": token},
                                     allow_redirects=False)
        assert response.status == 303, (action, await response.text())
    await hub.jobs.drain()
    async with hub.db.read() as session:
        conversation = await session.get_one(Conversation, desk.conv)
        messages = list(await session.scalars(select(Message).where(
            Message.conversation_id == desk.conv).order_by(Message.id)))
    assert conversation.status == "resolved" and conversation.assignee_id is not None
    (reply, note, notice) = messages[1:]
    assert [(m.direction, m.body) for m in (reply, note)] == [
        ("outbound", "We fix it <today>"), ("note", "Called the crew")]
    # Resolving from the workspace tells the citizen, with the tracking and survey links.
    assert notice.direction == "outbound" and notice.automatic
    assert f"/track/{conversation.reference}" in notice.body and "/survey/" in notice.body
    assert hub.adapters.get("email").sent[0].body == "We fix it <today>"
    page = await _page(client, base + "?done=reply")
    assert "Reply queued for delivery." in page and 'class="message note"' in page
    assert "Status: <span class=\"status-value\">sent</span>" in page
    assert "We fix it &lt;today&gt;" in page and "Assigned to</dt><dd>agent@city.example" in page


async def test_a_refused_reply_says_why_and_keeps_the_text(client: TestClient, desk: Desk,
                                                           hub: Hub) -> None:
    token = await sign_in(client)
    response = await client.post(f"/staff/conversations/{desk.conv}/reply", data={
        "body": "Please reply by text", "channel": "sms", "csrf": token})
    page = await response.text()
    assert response.status == 422 and 'role="alert"' in page and "opted out" in page
    assert ">Please reply by text</textarea>" in page
    empty = await client.post(f"/staff/conversations/{desk.conv}/note",
                              data={"body": "  ", "csrf": token})
    assert empty.status == 422 and "The note is empty" in await empty.text()


async def test_views_filters_search_and_pages(client: TestClient, desk: Desk, hub: Hub,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(4):
        accepted = await hub.intake.accept(inbound(f"+1555000100{n}", f"Pothole number {n}"))
        async with hub.db.transaction() as session:
            (await session.get_one(Conversation, accepted.conversation_id)).queue = "roads"
    token = await sign_in(client)
    await client.post(f"/staff/conversations/{desk.conv}/claim", data={"csrf": token})
    mine = await _page(client, "/staff/?view=mine")
    assert "Streetlight" in mine and "+1555000100" not in mine
    unassigned = await _page(client, "/staff/?view=unassigned")
    assert "Streetlight" not in unassigned, unassigned[unassigned.index("Streetlight") - 200:]
    assert unassigned.count("+1555000100") == 4
    assert "My tax bill" not in await _page(client, "/staff/")  # another queue
    by_channel = await _page(client, "/staff/?channel=email")
    assert "Streetlight" in by_channel and "+1555000100" not in by_channel
    found = await _page(client, "/staff/?q=number+2")
    assert "+15550001002" in found and "+15550001001" not in found
    monkeypatch.setattr("hub.web.staff.pages.PAGE_SIZE", 2)
    first = await _page(client, "/staff/?view=unassigned")
    assert "+15550001003" in first and "+15550001002" in first and "+15550001001" not in first
    link = first[first.index('/staff/?', first.index("Older conversations") - 300):]
    link = html.unescape(link[:link.index('"')])
    second = await _page(client, link)
    assert "+15550001001" in second and "+15550001003" not in second


async def test_an_admin_sets_a_password_and_that_persons_sessions_end(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    assert (await client.get("/staff/admin/staff")).status == 404  # agents: no such page
    agent_cookie = client.session.cookie_jar.filter_cookies(
        client.make_url("/staff/"))["hub_session"].value
    client.session.cookie_jar.clear()
    token = await sign_in(client, ADMIN)
    page = await _page(client, "/staff/admin/staff")
    assert "Staff accounts" in page and AGENT in page
    async with hub.db.read() as session:
        agent = await find_staff(session, AGENT)
    assert agent is not None
    url = f"/staff/admin/staff/{agent.id}/password"
    differ = await client.post(url, data={"password": "new password 3", "again": "other one",
                                          "csrf": token})
    assert differ.status == 422 and "The two passwords differ." in await differ.text()
    done = await client.post(url, data={"password": "new password 3",
                                        "again": "new password 3", "csrf": token})
    assert done.status == 200 and "New password set for agent@city.example" in await done.text()
    replay = await client.get("/staff/", allow_redirects=False,
                              cookies={"hub_session": agent_cookie})
    assert replay.status == 303 and replay.headers["Location"] == "/staff/login"
    client.session.cookie_jar.clear()
    await sign_in(client, AGENT, "new password 3")


def test_hub_staff_password_reads_stdin_and_ends_sessions(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def add_signed_in_agent() -> None:
        hub = Hub(settings, adapters=[])
        await hub.prepare()
        await build_desk(hub)
        async with hub.db.read() as session:
            staff = await find_staff(session, AGENT)
        assert staff is not None
        await sessions.start(hub.db, staff.id, hours=1)
        await hub.stop()

    asyncio.run(add_signed_in_agent())
    config = config_file(settings, tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("a brand new password\n"))
    assert cli.main(["staff", "password", AGENT, "--password-stdin",
                     "--config", str(config)]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["staff", "password", AGENT, "--password-stdin",
                     "--config", str(config)]) == 1

    async def stored() -> tuple[str | None, int]:
        db = Database(settings.database.url)
        async with db.read() as session:
            staff = await find_staff(session, AGENT)
            live = await session.scalar(select(func.count()).select_from(WebSession))
        await db.dispose()
        return (staff.password_hash if staff else None), int(live or 0)

    password_hash, live_sessions = asyncio.run(stored())
    assert verify_password(password_hash, "a brand new password") and live_sessions == 0
