"""A staff reply with files, end to end on Telegram (SQLite and PostgreSQL): the staff API takes
it as `multipart/form-data`, the delivery job sends it through python-telegram-bot, and the Bot
API stand-in receives the text by sendMessage, the photo by sendPhoto and the PDF by
sendDocument, each upload with the very bytes staff attached."""

from __future__ import annotations

import pytest
from aiohttp import FormData

from hub.storage.tables import Message

from .conftest import CHAT, TgHub, conversations

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 16
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def mode() -> str:
    return "webhook"  # how updates arrive does not matter to what is sent


async def test_a_photo_goes_by_send_photo_and_a_pdf_by_send_document(tg: TgHub) -> None:
    await tg.message("The bench in the park is broken")
    (conversation,) = await conversations(tg.hub)
    data = FormData()
    data.add_field("body", "Is this the bench you mean?")
    data.add_field("attachment", JPEG, filename="bench.jpg", content_type="image/jpeg")
    data.add_field("attachment", PDF, filename="repair plan.pdf",
                   content_type="application/pdf")
    response = await tg.client.post(f"/api/v1/conversations/{conversation.id}/replies",
                                    data=data, headers=tg.headers)
    assert response.status == 202, await response.text()
    message_id = (await response.json())["message_id"]
    await tg.send_all()

    text = tg.api.calls("sendMessage")[-1]  # after the acknowledgment, if any
    assert text.params["chat_id"] in (CHAT, str(CHAT))
    assert text.params["text"] == "Is this the bench you mean?"
    (photo,) = tg.api.calls("sendPhoto")
    assert photo.files["photo"].content == JPEG
    assert photo.files["photo"].filename == "bench.jpg"
    (document,) = tg.api.calls("sendDocument")
    assert document.files["document"].content == PDF
    assert document.files["document"].filename == "repair plan.pdf"
    async with tg.hub.db.read() as session:
        sent = await session.get_one(Message, message_id)
    assert sent.delivery_status == "sent"
