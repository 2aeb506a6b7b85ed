"""The chat page over plain HTTP: `/chat` is the one page other sites may frame (only the
allowed origins), `/chat/widget.js` is small and loadable from anywhere, and without JavaScript
the page's leave-a-message form (CSRF, honeypot, a form token that makes a double submit one
message) makes a `webchat` conversation with the citizen's email and ends on its tracking page.
"""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.app import Hub
from hub.storage.tables import Conversation, Identity, Message
from hub.web.citizen.chat import WIDGET
from tests.web.citizen.citizen import hidden, stored

SITE = "http://www.city.example:8000"
SCRIPT = '<script>alert("x")</script>'


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  request: pytest.FixtureRequest) -> dict[str, dict[str, object]]:
    settings_data["webchat"] = {"allowed_origins": [SITE],
                                "enabled": "disabled" not in request.node.name}
    return settings_data


async def leave_form(client: TestClient, query: str = "") -> dict[str, str]:
    page = await client.get(f"/chat{query}")
    assert page.status == 200, await page.text()
    return hidden(await page.text())


async def test_only_the_chat_page_may_be_framed_and_only_by_allowed_sites(
        client: TestClient) -> None:
    chat = await client.get("/chat?embed=1")
    assert chat.status == 200
    policy = chat.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {SITE}" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "X-Frame-Options" not in chat.headers
    assert chat.headers["Cache-Control"] == "no-store"
    for path in ("/", "/forms/pothole", "/chat/nothing-here"):
        other = await client.get(path)
        assert other.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in other.headers["Content-Security-Policy"], path


async def test_the_widget_script_is_small_and_loadable_from_other_sites(
        client: TestClient) -> None:
    script = await client.get("/chat/widget.js")
    assert script.status == 200
    body = await script.read()
    assert len(body) < 10_000 and body == WIDGET.read_bytes()
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert script.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "no-store" not in script.headers["Cache-Control"]
    again = await client.get("/chat/widget.js", headers={
        "If-Modified-Since": script.headers["Last-Modified"]})
    assert again.status == 304
    assert again.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


async def test_the_page_in_both_languages_with_the_topics(client: TestClient) -> None:
    english = await (await client.get("/chat")).text()
    assert '<html lang="en">' in english and "Chat with City Hall" in english
    assert re.search(r'<option value="pothole">[^<]+</option>', english)
    assert 'role="log"' in english and 'aria-live="polite"' in english
    spanish = await (await client.get("/chat?lang=es")).text()
    assert '<html lang="es">' in spanish and "Chatee con el Ayuntamiento" in spanish
    portal = await (await client.get("/")).text()
    assert 'href="/chat"' in portal


async def test_leaving_a_message_without_javascript(client: TestClient, hub: Hub) -> None:
    tokens = await leave_form(client)
    fields = {**tokens, "name": "Jane", "email": "Jane@Example.org", "phone": "",
              "topic": "pothole", "message": "A hole in Elm St", "website": ""}
    first = await client.post("/chat", data=fields, allow_redirects=False)
    assert first.status == 303, await first.text()
    again = await client.post("/chat", data=fields, allow_redirects=False)  # a double submit
    assert again.headers["Location"] == first.headers["Location"]
    reference = first.headers["Location"].rsplit("/", 1)[1]
    assert (await stored(hub))[:2] == (1, 1)
    async with hub.db.read() as session:
        conversation = await session.scalar(select(Conversation).where(
            Conversation.reference == reference))
        assert conversation is not None and conversation.channel == "webchat"
        assert conversation.queue == "roads"  # the pothole form's queue
        addresses = set(await session.scalars(select(Identity.address).where(
            Identity.contact_id == conversation.contact_id)))
        message = await session.scalar(select(Message).where(
            Message.conversation_id == conversation.id))
    assert "jane@example.org" in addresses
    assert message is not None and message.body == "A hole in Elm St"
    track = await client.get(first.headers["Location"])
    assert track.status == 200 and "A hole in Elm St" in await track.text()


async def test_a_message_without_contact_is_shown_again_with_errors(client: TestClient,
                                                                    hub: Hub) -> None:
    tokens = await leave_form(client, "?lang=es")
    answer = await client.post("/chat?lang=es", data={**tokens, "message": SCRIPT,
                                                     "email": "", "phone": ""})
    assert answer.status == 400
    page = await answer.text()
    assert 'class="error-summary"' in page and 'href="#l-email"' in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and SCRIPT not in page
    assert "Introduzca una dirección de correo electrónico o un número de teléfono" in page
    missing = await client.post("/chat", data={**tokens, "email": "a@b.example"})
    assert 'href="#l-message"' in await missing.text()
    forged = await client.post("/chat", data={**tokens, "csrf": "x" * 32, "email": "a@b.example",
                                              "message": "hi"}, allow_redirects=False)
    assert forged.status == 403
    bot = await client.post("/chat", data={**tokens, "email": "a@b.example", "message": "hi",
                                           "website": "https://spam.example"})
    assert bot.status == 200
    assert await stored(hub) == (0, 0, 0)


async def test_a_disabled_chat_has_no_page(client: TestClient) -> None:
    assert (await client.get("/chat")).status == 404
    assert 'href="/chat"' not in await (await client.get("/")).text()
