"""The tracking page's extras (SQLite and PostgreSQL): the queue's expected response time in
plain words of the page's language while the request is open, and the timeline's files as
download links under the reference that cannot be guessed, moved to another request or used
for what the timeline does not show; images inline with their type, the rest downloads, always
nosniff. axe-core finds nothing on a page with both."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, expect
from sqlalchemy import select

from hub.app import Hub
from hub.storage.ids import ids
from hub.storage.tables import Attachment, Conversation, Message
from hub.web.citizen.files import file_url
from tests.web.citizen.citizen import PNG, POTHOLE, post_form
from tests.web.citizen.test_survey import request_of, set_status, staff_token
from tests.web.staff.test_browser import axe_violations

FILE_LINK = re.compile(r'<a href="(/track/[A-Z0-9]+/files/[0-9a-f-]+)" download="([^"]+)">')
HTML_FILE = b"<html><script>alert('x')</script></html>"


async def filed_with_photo(client: TestClient, hub: Hub) -> tuple[str, int]:
    response = await post_form(client, POTHOLE, files=[("photo", "hole.png", "image/png", PNG)])
    assert response.status == 303, await response.text()
    reference = str(response.headers["Location"]).rsplit("/", 1)[1]
    async with hub.db.read() as session:
        conv = await session.scalar(select(Conversation.id).where(
            Conversation.reference == reference))
    assert conv is not None
    return reference, conv


async def add_file(hub: Hub, conv: int, direction: str, name: str, kind: str,
                   data: bytes) -> int:
    """A message of `direction` with one attachment; the attachment's id."""
    sha = await hub.blobs.put(data)
    async with hub.db.transaction() as session:
        message = Message(id=await ids(session).next("messages"), conversation_id=conv,
                          direction=direction, channel="webform", body=f"a {direction}",
                          flags=[], meta={})
        session.add(message)
        await session.flush()
        attachment = Attachment(message_id=message.id, filename=name, content_type=kind,
                                size=len(data), sha256=sha)
        session.add(attachment)
        await session.flush()
        return attachment.id


async def test_expected_response_in_the_pages_language(client: TestClient, hub: Hub) -> None:
    reference, conv = await request_of(client, hub)  # a hazard: roads, "2 days"
    page = await (await client.get(f"/track/{reference}")).text()
    assert '<p id="expected-response">We usually reply within 2 days.</p>' in page
    page = await (await client.get(f"/track/{reference}?lang=es")).text()
    assert '<p id="expected-response">Solemos responder en un plazo de 2 días.</p>' in page
    await set_status(client, await staff_token(hub), conv, "resolved")
    page = await (await client.get(f"/track/{reference}?lang=en")).text()
    assert "expected-response" not in page  # nothing is awaited any more


async def test_files_are_links_with_safe_headers(client: TestClient, hub: Hub) -> None:
    reference, conv = await filed_with_photo(client, hub)
    await add_file(hub, conv, "outbound", "letter.html", "text/html", HTML_FILE)
    page = await (await client.get(f"/track/{reference}")).text()
    links = dict((name, href) for href, name in FILE_LINK.findall(page))
    assert set(links) == {"hole.png", "letter.html"}
    photo = await client.get(links["hole.png"])
    assert photo.status == 200 and await photo.read() == PNG
    assert photo.headers["Content-Type"] == "image/png"
    assert photo.headers["Content-Disposition"].startswith("inline;")
    assert photo.headers["X-Content-Type-Options"] == "nosniff"
    letter = await client.get(links["letter.html"])
    assert letter.status == 200 and await letter.read() == HTML_FILE
    assert letter.headers["Content-Type"] == "application/octet-stream"
    assert letter.headers["Content-Disposition"].startswith("attachment;")
    assert letter.headers["X-Content-Type-Options"] == "nosniff"


async def test_links_cannot_be_guessed_moved_or_reach_hidden_files(client: TestClient,
                                                                   hub: Hub) -> None:
    reference, conv = await filed_with_photo(client, hub)
    other, _ = await request_of(client, hub)
    note = await add_file(hub, conv, "note", "internal.pdf", "application/pdf", b"%PDF-1.4")
    page = await (await client.get(f"/track/{reference}")).text()
    [(href, _)] = FILE_LINK.findall(page)  # the note's file is not on the page
    assert "internal.pdf" not in page
    attachment_id = int(href.rsplit("/", 1)[1].split("-")[0])
    wrong = [href[:-1] + ("0" if href[-1] != "0" else "1"),  # another mac
             href.replace(reference, other),  # the same file under another request
             f"/track/{reference}/files/{attachment_id}",  # no mac at all
             file_url(hub.reply_secret, reference, note),  # signed, but a note's file
             file_url(hub.reply_secret, other, attachment_id)]  # signed for the wrong request
    for path in wrong:
        response = await client.get(path)
        assert response.status == 404, path
        assert "internal" not in await response.text()


@pytest.mark.slow_e2e
async def test_axe_on_a_tracking_page_with_files(browser: Browser, client: TestClient,
                                                 hub: Hub) -> None:
    reference, _ = await filed_with_photo(client, hub)
    for language in ("en", "es"):
        context = await browser.new_context(base_url=str(client.make_url("/")),
                                            extra_http_headers={"Accept-Language": language})
        page = await context.new_page()
        await page.goto(f"/track/{reference}")
        await expect(page.locator("#expected-response")).to_be_visible()
        await expect(page.get_by_role("link", name="hole.png")).to_be_visible()
        assert await axe_violations(page) == [], language
        await context.close()
