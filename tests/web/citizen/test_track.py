"""Tracking pages over HTTP (SQLite and PostgreSQL): the status and the public timeline (staff
replies yes; notes, traces and staff names never), a message added from the page, noindex, a
polite 404 for a wrong reference, and a citizen's markup shown as text."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.app import Hub
from hub.storage.tables import Conversation, Message
from tests.web.citizen.citizen import (
    PDF,
    PNG,
    POTHOLE,
    conversation_id,
    hidden,
    multipart,
    open_form,
    post_form,
    staff_call,
    staff_token,
    stored,
)

SCRIPT = '<script>alert("x")</script>'


async def submitted(client: TestClient, fields: dict[str, str] | None = None) -> str:
    response = await post_form(client, fields or POTHOLE,
                               files=[("photo", "hole.png", "image/png", PNG)])
    assert response.status == 303, await response.text()
    return str(response.headers["Location"]).rsplit("/", 1)[1]


async def test_the_timeline_shows_replies_but_never_notes_nor_staff(client: TestClient,
                                                                     hub: Hub) -> None:
    reference = await submitted(client)
    conv = await conversation_id(hub, reference)
    token = await staff_token(hub)
    await staff_call(client, token, f"/api/v1/conversations/{conv}/notes",
                     {"body": "Internal: the crew is busy"})
    await staff_call(client, token, f"/api/v1/conversations/{conv}/replies",
                     {"body": "A crew will fill it on Monday."})
    page = await client.get(f"/track/{reference}")
    html = await page.text()
    assert page.status == 200
    assert page.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert '<meta name="robots" content="noindex, nofollow">' in html
    assert page.headers["Cache-Control"] == "no-store"
    assert "Received: we are working on it" in html
    assert "A crew will fill it on Monday." in html and "City Hall" in html
    for secret in ("Internal: the crew", "Clara", "clerk@city.example", "roads",
                   "jane@example.org"):
        assert secret not in html
    spanish = await (await client.get(f"/track/{reference}?lang=es")).text()
    assert "Recibida: estamos trabajando en ella" in spanish and "Ayuntamiento" in spanish


async def test_a_message_from_the_page_joins_the_conversation(client: TestClient,
                                                              hub: Hub) -> None:
    reference = await submitted(client)
    page = await client.get(f"/track/{reference}")
    tokens = hidden(await page.text())
    for _ in range(2):  # a double click is one message
        response = await client.post(f"/track/{reference}", data={
            **tokens, "message": "It got bigger after the rain."}, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == f"/track/{reference}?sent=1#timeline"
    conv = await conversation_id(hub, reference)
    async with hub.db.read() as session:
        rows = list(await session.scalars(select(Message).where(
            Message.conversation_id == conv).order_by(Message.id)))
    inbound = [m for m in rows if m.direction == "inbound"]
    assert [m.channel for m in inbound] == ["webform", "webform"]
    assert inbound[-1].body == "It got bigger after the rain."
    after = await (await client.get(f"/track/{reference}?sent=1")).text()
    assert "Your message has been added." in after and "It got bigger" in after
    empty = await client.post(f"/track/{reference}", data={**tokens, "message": " "})
    assert empty.status == 400 and 'href="#f-message"' in await empty.text()
    refused = await client.post(f"/track/{reference}", data={"message": "no token"})
    assert refused.status == 403


async def test_a_closed_request_takes_no_more_messages(client: TestClient, hub: Hub) -> None:
    reference = await submitted(client)
    token = await staff_token(hub)
    conv = await conversation_id(hub, reference)
    await staff_call(client, token, f"/api/v1/conversations/{conv}/status", {"status": "closed"})
    page = await client.get(f"/track/{reference}")
    html = await page.text()
    assert "Closed" in html and 'name="message"' not in html
    csrf = (await open_form(client))["csrf"]  # the page of a closed request has no form
    late = await client.post(f"/track/{reference}", data={"csrf": csrf, "message": "Hello?"})
    assert late.status == 409
    async with hub.db.read() as session:
        assert (await session.get_one(Conversation, conv)).status == "closed"


async def test_a_wrong_reference_is_a_polite_404(client: TestClient) -> None:
    for path in ("/track/ABCDEFGHJK", "/track/abc", "/track/0OIL1ABCDE"):
        response = await client.get(path)
        html = await response.text()
        assert response.status == 404 and "Page not found" in html
        assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
        assert "ABCDEFGHJK" not in html.split("<main", 1)[1]


async def test_markup_in_every_field_is_shown_as_text(client: TestClient, hub: Hub) -> None:
    fields = {"where.address": SCRIPT, "hazard": "no", "size": "small", "description": SCRIPT,
              "name": SCRIPT, "email": "jane@example.org"}
    reference = await submitted(client, fields)
    html = await (await client.get(f"/track/{reference}")).text()
    assert SCRIPT not in html
    assert html.count("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") >= 2


async def test_a_photo_can_be_added_and_a_wrong_file_is_refused(client: TestClient,
                                                                hub: Hub) -> None:
    reference = await submitted(client)
    tokens = hidden(await (await client.get(f"/track/{reference}")).text())
    wrong = await client.post(f"/track/{reference}", data=multipart(
        {**tokens, "message": "Here is a photo"}, [("photo", "hole.png", "image/png", PDF)]))
    html = await wrong.text()
    assert wrong.status == 400 and 'href="#f-photo"' in html and 'id="f-photo-error"' in html
    assert "Here is a photo</textarea>" in html
    assert await stored(hub) == (1, 1, 1)
    added = await client.post(f"/track/{reference}", data=multipart(
        tokens, [("photo", "later.png", "image/png", PNG)]), allow_redirects=False)
    assert added.status == 303
    assert await stored(hub) == (1, 2, 2)
    page = await (await client.get(f"/track/{reference}")).text()
    assert re.search(rf'Files: <a href="/track/{reference}/files/[0-9a-f-]+" '
                     r'download="later.png">later.png</a>', page)
