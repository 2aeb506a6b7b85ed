"""SMS does not carry files staff attach (MMS reaches only US/CA numbers and needs each file at a
public URL Twilio fetches): a reply with a file on SMS is refused at once with 422
`attachments_not_supported`, nothing is stored or queued and the Twilio stand-in is never
called; the same reply without the file goes out (SQLite and PostgreSQL)."""

from __future__ import annotations

from aiohttp import FormData
from sqlalchemy import func, select

from hub.storage.tables import Attachment, Message, OutboxItem

from .conftest import CITIZEN, SmsHub, conversations

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4


async def counts(sms: SmsHub) -> tuple[int, ...]:
    async with sms.hub.db.read() as session:
        return tuple([int(await session.scalar(select(func.count()).select_from(model)) or 0)
                      for model in (Message, OutboxItem, Attachment)])


async def test_a_reply_with_a_file_on_sms_is_refused_before_anything_is_queued(
        sms: SmsHub) -> None:
    assert (await sms.text("The streetlight on Elm St is out")).status == 200
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    await sms.deliver()
    before, creates = await counts(sms), len(sms.api.requests_to("Messages.json", "POST"))

    data = FormData()
    data.add_field("body", "Is this the lamp?")
    data.add_field("attachment", JPEG, filename="lamp.jpg", content_type="image/jpeg")
    response = await sms.client.post(f"/api/v1/conversations/{conversation.id}/replies",
                                     data=data, headers=sms.headers)
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "attachments_not_supported"
    await sms.deliver()
    assert await counts(sms) == before
    assert len(sms.api.requests_to("Messages.json", "POST")) == creates

    answer = await sms.reply(conversation.id, "Is it the lamp in front of number 4?")
    assert answer.status == 202
    await sms.deliver()
    (sent,) = sms.api.requests_to("Messages.json", "POST")[creates:]
    assert sent.form["To"] == CITIZEN and "MediaUrl" not in sent.form
