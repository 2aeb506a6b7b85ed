"""Files with a reply in a real headless Chromium: the file input shows only while a channel
that carries files is chosen, staff attach a PDF, the reply is sent with it (the channel gets
the same bytes) and the timeline lists it; axe-core finds nothing on the form with the input.

Slow (a browser each): marked slow_e2e, so they run on SQLite unless --full.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import FilePayload, Page, expect
from sqlalchemy import update

from hub.app import Hub
from hub.config import Settings
from hub.storage.tables import Identity
from tests.support.adapter import RecordingAdapter
from tests.web.staff.desk import Desk
from tests.web.staff.test_browser import axe_violations, sign_in_by_keyboard
from tests.web.staff.test_reply_files import PDF, carrying_adapters

pytestmark = pytest.mark.slow_e2e


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    instance = Hub(settings, adapters=carrying_adapters())
    await instance.prepare()
    yield instance
    await instance.stop()


async def test_staff_attach_a_pdf_and_the_reply_is_sent_with_it(page: Page, desk: Desk,
                                                                hub: Hub) -> None:
    async with hub.db.transaction() as session:  # the citizen can be texted too
        await session.execute(update(Identity).where(Identity.channel == "sms")
                              .values(opted_out=False, opted_out_at=None))
    await sign_in_by_keyboard(page)
    await page.goto(f"/staff/conversations/{desk.conv}")
    files = page.get_by_label("Attach files")
    await expect(files).to_be_visible()
    await page.get_by_label("sms: +15550001111").check()
    await expect(files).to_be_hidden()  # SMS does not carry files
    await page.get_by_label("email: ana@example.org").check()
    await expect(files).to_be_visible()
    assert await axe_violations(page) == []

    permit: FilePayload = {"name": "permit.pdf", "mimeType": "application/pdf", "buffer": PDF}
    await files.set_input_files(files=[permit])
    await page.locator("#reply-body").fill("The permit is attached.")
    await page.get_by_role("button", name="Send reply").click()
    await page.wait_for_url(f"**/staff/conversations/{desk.conv}?done=reply*")
    last = page.locator(".message.outbound").last
    await expect(last).to_contain_text("The permit is attached.")
    await expect(last.get_by_role("link", name="Download permit.pdf")).to_be_visible()
    await hub.jobs.drain()
    email = hub.adapters.get("email")
    assert isinstance(email, RecordingAdapter)
    (sent,) = email.sent
    assert [(a.filename, a.content_type, a.data) for a in sent.attachments] == [
        ("permit.pdf", "application/pdf", PDF)]
    await expect(last).to_contain_text("sent")
