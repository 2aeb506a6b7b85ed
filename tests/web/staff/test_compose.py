"""The reply box over HTTP: the collision check (a reply held when someone wrote since the page
loaded, "Send anyway"), canned responses filled in for the conversation (by script and without),
and the SMS segment counter."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub import canned, service
from hub.app import Hub
from hub.staff import find_staff
from hub.storage.tables import Message
from tests.support.adapter import inbound
from tests.web.staff.desk import ADMIN, Desk, sign_in

AFTER_RE = re.compile(r'name="after" value="(\d+)"')


async def _after(client: TestClient, conversation: int) -> int:
    page = await (await client.get(f"/staff/conversations/{conversation}")).text()
    found = AFTER_RE.search(page)
    assert found is not None, "the reply form carries no `after`"
    return int(found.group(1))


async def _colleague_replies(hub: Hub, conversation: int, text: str) -> int:
    async with hub.db.read() as session:
        admin = await find_staff(session, ADMIN)
    assert admin is not None
    message = await service.reply(hub.db, admin, conversation, text, channels=hub.adapters,
                                  submit_delivery=hub.jobs.submit_delivery,
                                  publish=hub.events.publish)
    return message.id


async def _replies(hub: Hub, conversation: int) -> list[str]:
    async with hub.db.read() as session:
        return list(await session.scalars(select(Message.body).where(
            Message.conversation_id == conversation, Message.direction == "outbound")
            .order_by(Message.id)))


async def test_a_reply_after_news_is_held_with_the_news_and_send_anyway(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client)
    seen = await _after(client, desk.conv)
    newer = await _colleague_replies(hub, desk.conv, "A colleague answered first.")
    url = f"/staff/conversations/{desk.conv}/reply"
    held = await client.post(url, data={"body": "My late answer", "channel": "email",
                                        "after": str(seen), "csrf": token})
    page = await held.text()
    assert held.status == 409 and 'id="conflict"' in page and 'role="alert"' in page
    assert "new messages arrived while you were writing" in page
    assert f'class="message outbound new" id="message-{newer}"' in page
    assert "A colleague answered first." in page and ">My late answer</textarea>" in page
    assert 'name="force" value="1"' in page and "Send anyway" in page
    assert f'name="after" value="{newer}"' in page  # sending again is now up to date
    assert await _replies(hub, desk.conv) == ["A colleague answered first."]
    anyway = await client.post(url, data={"body": "My late answer", "channel": "email",
                                          "after": str(seen), "force": "1", "csrf": token},
                               allow_redirects=False)
    assert anyway.status == 303, await anyway.text()
    assert await _replies(hub, desk.conv) == ["A colleague answered first.", "My late answer"]


async def test_a_reply_goes_when_nothing_is_new_and_is_held_when_the_citizen_wrote(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client, ADMIN)
    url = f"/staff/conversations/{desk.outsider_conv}/reply"
    fresh = await client.post(url, data={"body": "First", "after": str(
        await _after(client, desk.outsider_conv)), "csrf": token}, allow_redirects=False)
    assert fresh.status == 303, await fresh.text()
    seen = await _after(client, desk.outsider_conv)
    again = await hub.intake.accept(inbound("+15550009999", "Still wrong, any news?"))
    assert again.conversation_id == desk.outsider_conv
    held = await client.post(url, data={"body": "Second", "after": str(seen), "csrf": token})
    page = await held.text()
    assert held.status == 409 and "Still wrong, any news?" in page and "New</strong>" in page
    assert await _replies(hub, desk.outsider_conv) == ["First"]


async def test_canned_responses_are_filled_in_for_the_conversation(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    async with hub.db.transaction() as session:
        admin = await find_staff(session, ADMIN)
        assert admin is not None
        mine = await canned.create(session, admin, canned.CannedIn(
            "Greeting", "Dear {{ citizen_name }}, about {{ reference }}:", "roads"))
        theirs = await canned.create(session, admin, canned.CannedIn(
            "Tax office", "Taxes: {{ reference }}", "taxes"))
        mine_id, theirs_id = mine.id, theirs.id
    token = await sign_in(client)
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assert f'<option value="{mine_id}">Greeting (roads)</option>' in page
    assert "Tax office" not in page
    base = f"/staff/conversations/{desk.conv}/canned"
    filled = await client.get(f"{base}/{mine_id}")
    assert filled.status == 200
    text = (await filled.json())["text"]
    assert text.startswith("Dear Ana Citizen, about ") and text.endswith(":")
    assert text.removeprefix("Dear Ana Citizen, about ")[:-1] in page  # the reference
    assert (await client.get(f"{base}/{theirs_id}")).status == 404  # another queue's text
    inserted = await client.post(f"/staff/conversations/{desk.conv}/reply", data={
        "body": "Hello", "canned": str(mine_id), "insert": "1", "csrf": token})
    page = await inserted.text()
    assert inserted.status == 200 and f">Hello\n{text}</textarea>" in page
    assert await _replies(hub, desk.conv) == []  # inserting sends nothing
    refused = await client.post(f"/staff/conversations/{desk.conv}/reply", data={
        "body": "Hello", "canned": str(theirs_id), "insert": "1", "csrf": token})
    assert refused.status == 404
    client.session.cookie_jar.clear()
    assert (await client.get(f"{base}/{mine_id}", allow_redirects=False)).status == 303


async def test_the_sms_counter_counts_like_the_channel(client: TestClient, desk: Desk) -> None:
    token = await sign_in(client, ADMIN)
    url = "/staff/sms-segments"
    assert (await client.post(url, data={"text": "Hello"})).status == 403  # no CSRF token
    one = await client.post(url, data={"text": "Hello"}, headers={"X-CSRF-Token": token})
    assert (await one.json())["label"] == "SMS: 1 segment (GSM-7, 5 characters)"
    two = await client.post(url, data={"text": "a" * 161}, headers={"X-CSRF-Token": token})
    assert (await two.json())["label"] == "SMS: 2 segments (GSM-7, 161 characters)"
    wide = await client.post(url, data={"text": "Olá ✓"}, headers={"X-CSRF-Token": token})
    assert (await wide.json())["label"] == "SMS: 1 segment (UCS-2, 5 characters)"
    long = await client.post(url, data={"text": "x" * 2000}, headers={"X-CSRF-Token": token})
    assert "too long, at most 10 segments are sent" in (await long.json())["label"]
    sms_page = await (await client.get(f"/staff/conversations/{desk.outsider_conv}")).text()
    assert 'id="sms-counter"' in sms_page and "SMS: 1 segment (GSM-7, 0 characters)" in sms_page
    email_page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assert 'id="sms-counter"' not in email_page  # its SMS number opted out
