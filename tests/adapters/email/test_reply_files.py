"""A staff reply with a PDF, end to end by email (SQLite and PostgreSQL): a citizen's mail over
SMTP opens the conversation, the staff API takes the reply as `multipart/form-data`, the
delivery job loads the stored file and the captured relay receives it as a MIME attachment
with the very same bytes, next to the text."""

from __future__ import annotations

from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.storage.tables import Attachment, Conversation
from hub.web.app import create_app

from .conftest import LiveHub, citizen_mail
from .test_e2e import supervisor_token

PDF = (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
       + bytes(range(256)) * 4 + b"\ntrailer << /Root 1 0 R >>\n%%EOF\n")


async def test_a_reply_with_a_pdf_reaches_the_relay_as_a_mime_attachment(live: LiveHub) -> None:
    raw, _ = citizen_mail("Could you send me the permit form?")
    assert (await live.send(raw))[0] == 250
    async with live.hub.db.read() as session:
        (conversation,) = await session.scalars(select(Conversation))
    assert len(await live.outgoing()) == 1  # the acknowledgment
    token = await supervisor_token(live.hub)

    data = FormData()
    data.add_field("body", "Here is the permit form, to fill in and send back.")
    data.add_field("attachment", PDF, filename="Permit form.pdf",
                   content_type="application/pdf")
    async with TestClient(TestServer(create_app(live.hub))) as client:
        response = await client.post(f"/api/v1/conversations/{conversation.id}/replies",
                                     data=data, headers={"Authorization": f"Bearer {token}"})
        assert response.status == 202, await response.text()
        message_id = (await response.json())["message_id"]

    _ack, reply = await live.outgoing()
    text = reply.get_body(preferencelist=("plain",))
    assert text is not None and "Here is the permit form" in str(text.get_content())
    (part,) = list(reply.iter_attachments())
    assert part.get_content_type() == "application/pdf"
    assert part.get_filename() == "Permit form.pdf"
    assert part.get_content() == PDF
    async with live.hub.db.read() as session:
        rows = list(await session.scalars(select(Attachment).where(
            Attachment.message_id == message_id)))
    assert [(a.filename, a.size) for a in rows] == [("Permit form.pdf", len(PDF))]
