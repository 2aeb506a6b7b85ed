"""Replies with files through the staff API (`multipart/form-data`), on SQLite and PostgreSQL:
stored with the message and listed like inbound attachments, handed to the channel's send with
the same bytes; refused with 422 and nothing stored when a file is too big, not a PDF or an
image by its content, one too many, or the channel cannot carry files.

The channel here is the recording stand-in (tests/support/adapter.py), told it carries files;
the real channels' ends are in tests/adapters/*/test_reply_files.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from hub.adapters.base import Capability
from hub.app import Hub
from hub.storage.tables import Attachment
from tests.support.adapter import RecordingAdapter
from tests.web.world import World, call, snapshot

MAX_FILE = 64 * 1024
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
EXE = b"MZ\x90\x00\x03" + b"\x00" * 200


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    settings_data["hub"] = {**settings_data["hub"], "max_reply_attachment_bytes": MAX_FILE}
    return settings_data


@pytest.fixture
def adapter() -> RecordingAdapter:
    return RecordingAdapter(capabilities=Capability.DELIVERY_STATUS | Capability.ATTACHMENTS)


def form(body: str = "Here is the permit and a photo.",
         files: tuple[tuple[str, bytes], ...] = (), **fields: str) -> FormData:
    data = FormData(default_to_multipart=True)
    data.add_field("body", body)
    for name, value in fields.items():
        data.add_field(name, value)
    for filename, content in files:
        data.add_field("attachment", content, filename=filename,
                       content_type="application/octet-stream")
    return data


async def post_reply(client: TestClient, world: World, data: FormData) -> tuple[int, Any]:
    response = await client.post(f"/api/v1/conversations/{world.conv}/replies", data=data,
                                 headers={"Authorization": f"Bearer {world.tokens['agent']}"})
    return response.status, await response.json()


async def stored(hub: Hub) -> tuple[int, set[str]]:
    """(attachment rows, blob files on disk)."""
    async with hub.db.read() as session:
        rows = int(await session.scalar(select(func.count()).select_from(Attachment)) or 0)
    blobs = {p.name for p in hub.blobs.root.rglob("*") if p.is_file()}
    return rows, blobs


async def test_a_reply_with_files_is_stored_listed_and_sent_with_the_same_bytes(
        client: TestClient, world: World, hub: Hub, adapter: RecordingAdapter) -> None:
    files = (("../../etc/Permit 2026.PDF", PDF), ("photo.png", JPEG))
    status, answer = await post_reply(client, world, form(files=files))
    assert status == 202, answer
    message_id = answer["message_id"]

    status, detail, _ = await call(client, "GET", f"/api/v1/conversations/{world.conv}",
                                   world.tokens["agent"])
    assert status == 200
    (sent,) = [m for m in detail["messages"] if m["id"] == message_id]
    # The name loses its path; the extension follows the content, not the name.
    assert [(a["filename"], a["content_type"], a["size"]) for a in sent["attachments"]] == [
        ("Permit 2026.pdf", "application/pdf", len(PDF)), ("photo.png.jpg", "image/jpeg",
                                                           len(JPEG))]
    for attachment, content in zip(sent["attachments"], (PDF, JPEG), strict=True):
        status, body, _ = await call(client, "GET", attachment["url"], world.tokens["agent"])
        assert (status, body) == (200, content)

    await hub.jobs.drain()
    (out,) = [m for m in adapter.sent if m.message_id == message_id]
    assert out.body == "Here is the permit and a photo."
    assert [(a.filename, a.content_type, a.data) for a in out.attachments] == [
        ("Permit 2026.pdf", "application/pdf", PDF), ("photo.png.jpg", "image/jpeg", JPEG)]


async def test_a_multipart_reply_keeps_the_json_fields(client: TestClient, world: World,
                                                      hub: Hub) -> None:
    """after_message_id works in a form as in JSON: an old one holds the reply (409)."""
    status, answer = await post_reply(client, world, form(files=(("a.pdf", PDF),),
                                                          after_message_id="0"))
    assert (status, answer["error"]["code"]) == (409, "conflict")
    status, answer = await post_reply(client, world, form(files=(("a.pdf", PDF),),
                                                          channel="telegram"))
    assert (status, answer["error"]["code"]) == (422, "no_channel")
    assert (await stored(hub))[0] == 1  # the world's own photo only


@pytest.mark.parametrize(("files", "code"), [
    ((("big.pdf", PDF + b"0" * MAX_FILE),), "attachment_too_large"),
    ((("report.pdf", EXE),), "attachment_type"),
    ((("ok.pdf", PDF), ("notes.txt", b"plain text, not allowed")), "attachment_type"),
    (tuple((f"p{i}.pdf", PDF) for i in range(6)), "too_many_attachments"),
], ids=["too_big", "wrong_type", "one_wrong_of_two", "too_many"])
async def test_a_refused_file_is_422_and_nothing_is_stored(
        client: TestClient, world: World, hub: Hub, adapter: RecordingAdapter,
        files: tuple[tuple[str, bytes], ...], code: str) -> None:
    before, files_before = await snapshot(hub), await stored(hub)
    status, answer = await post_reply(client, world, form(files=files))
    assert (status, answer["error"]["code"]) == (422, code), answer
    assert await snapshot(hub) == before
    assert await stored(hub) == files_before
    await hub.jobs.drain()
    assert adapter.sent == []


async def test_a_channel_that_cannot_carry_files_is_422_before_anything_is_queued(
        client: TestClient, world: World, hub: Hub, adapter: RecordingAdapter) -> None:
    adapter.capabilities = Capability.DELIVERY_STATUS
    before, files_before = await snapshot(hub), await stored(hub)
    status, answer = await post_reply(client, world, form(files=(("permit.pdf", PDF),)))
    assert (status, answer["error"]["code"]) == (422, "attachments_not_supported"), answer
    assert await snapshot(hub) == before
    assert await stored(hub) == files_before
    # Without files the same reply goes out.
    status, answer = await post_reply(client, world, form())
    assert status == 202, answer


async def test_a_multipart_reply_refuses_unknown_fields_and_oversized_bodies(
        client: TestClient, world: World, hub: Hub) -> None:
    status, answer = await post_reply(client, world, form(priority="high"))
    assert (status, answer["error"]["code"]) == (400, "unknown_field")
    status, answer = await post_reply(client, world, form(body=""))
    assert (status, answer["error"]["code"]) == (422, "invalid_field")
    huge = tuple((f"p{i}.pdf", PDF + b"0" * (4 * MAX_FILE)) for i in range(8))
    status, answer = await post_reply(client, world, form(files=huge))
    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    assert (await stored(hub))[0] == 1


async def test_the_openapi_document_describes_the_multipart_reply(client: TestClient) -> None:
    status, document, _ = await call(client, "GET", "/api/v1/openapi.json")
    assert status == 200
    content = document["paths"]["/api/v1/conversations/{id}/replies"]["post"][
        "requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    schema = content["multipart/form-data"]["schema"]
    assert schema["properties"]["attachment"]["items"] == {"type": "string",
                                                           "format": "binary"}
    assert schema["required"] == ["body"]
