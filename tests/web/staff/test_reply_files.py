"""Files with a reply from the workspace, without script (SQLite and PostgreSQL): the reply form
is multipart with a labelled file input when a channel of the contact carries files; a file
sent with it is stored with the reply and listed on the timeline; a file too big, of the
wrong type, or on a channel that cannot carry files (SMS) is refused with the reason on the
page (422) and nothing is stored; the form still needs its CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from hub.adapters.base import Capability
from hub.app import Hub
from hub.config import Settings
from hub.storage.tables import Attachment, Message
from tests.support.adapter import RecordingAdapter
from tests.web.staff.desk import ADMIN, Desk, GatedAdapter, sign_in

MAX_FILE = 64 * 1024
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def carrying_adapters() -> list[RecordingAdapter]:
    """The desk's channels, email told it carries files (as the real email channel does)."""
    return [GatedAdapter(name="email",
                         capabilities=Capability.DELIVERY_STATUS | Capability.ATTACHMENTS),
            RecordingAdapter(name="sms")]


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    settings_data["hub"] = {**settings_data["hub"], "max_reply_attachment_bytes": MAX_FILE}
    return settings_data


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    instance = Hub(settings, adapters=carrying_adapters())
    await instance.prepare()
    yield instance
    await instance.stop()


def reply_form(csrf: str, body: str, channel: str, *files: tuple[str, bytes]) -> FormData:
    data = FormData(default_to_multipart=True)
    for name, value in (("csrf", csrf), ("body", body), ("channel", channel)):
        if value:
            data.add_field(name, value)
    for filename, content in files:
        data.add_field("attachment", content, filename=filename,
                       content_type="application/octet-stream")
    return data


async def counts(hub: Hub) -> tuple[int, int]:
    async with hub.db.read() as session:
        return (int(await session.scalar(select(func.count()).select_from(Message)) or 0),
                int(await session.scalar(select(func.count()).select_from(Attachment)) or 0))


async def test_the_form_offers_files_only_where_a_channel_carries_them(
        client: TestClient, desk: Desk) -> None:
    await sign_in(client, ADMIN)
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assert 'enctype="multipart/form-data"' in page
    assert '<label for="reply-attachment">Attach files</label>' in page
    assert 'type="file" id="reply-attachment" name="attachment" multiple' in page
    assert 'data-channels="email"' in page
    sms_only = await (await client.get(f"/staff/conversations/{desk.outsider_conv}")).text()
    assert 'id="reply-body"' in sms_only and 'id="reply-attachment"' not in sms_only


async def test_a_reply_with_a_file_is_stored_and_shown_on_the_timeline(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client)
    answer = await client.post(f"/staff/conversations/{desk.conv}/reply",
                               data=reply_form(token, "The permit is attached.", "email",
                                               ("permit.pdf", PDF)),
                               allow_redirects=False)
    assert answer.status == 303, await answer.text()
    async with hub.db.read() as session:
        message_id = await session.scalar(select(Message.id).where(
            Message.conversation_id == desk.conv, Message.direction == "outbound"))
        (row,) = await session.scalars(select(Attachment).where(
            Attachment.message_id == message_id))
    assert (row.filename, row.content_type, row.size) == ("permit.pdf", "application/pdf",
                                                          len(PDF))
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assert f'href="/staff/attachments/{row.id}" download>Download permit.pdf</a>' in page
    download = await client.get(f"/staff/attachments/{row.id}")
    assert download.status == 200 and await download.read() == PDF


@pytest.mark.parametrize(("conversation", "channel", "files", "reason"), [
    ("conv", "email", (("big.pdf", PDF + b"0" * MAX_FILE),), "is larger than 64 KB"),
    ("conv", "email", (("script.pdf", b"<script>alert(1)</script>"),),
     "is not a PDF or an image"),
    ("outsider_conv", "", (("permit.pdf", PDF),), "files cannot be sent on sms"),
], ids=["too_big", "wrong_type", "sms"])
async def test_a_refused_file_shows_why_and_stores_nothing(
        client: TestClient, desk: Desk, hub: Hub, conversation: str, channel: str,
        files: tuple[tuple[str, bytes], ...], reason: str) -> None:
    token = await sign_in(client, ADMIN)
    before = await counts(hub)
    conversation_id = getattr(desk, conversation)
    answer = await client.post(f"/staff/conversations/{conversation_id}/reply",
                               data=reply_form(token, "See the file.", channel, *files),
                               allow_redirects=False)
    page = await answer.text()
    assert answer.status == 422, page
    alert = page[page.find('role="alert"'):][:300]
    assert reason in page and "choose the files again" in page, alert
    assert ">See the file.</textarea>" in page  # the text is kept
    assert await counts(hub) == before


async def test_a_multipart_reply_without_its_csrf_token_is_403(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    before = await counts(hub)
    answer = await client.post(f"/staff/conversations/{desk.conv}/reply",
                               data=reply_form("", "No token.", "email", ("permit.pdf", PDF)),
                               allow_redirects=False)
    assert answer.status == 403
    assert await counts(hub) == before
