"""The SMS channel end to end on SQLite and PostgreSQL: the real twilio library talking HTTP to
the Twilio stand-in, webhooks signed by twilio's own RequestValidator for a public URL that is
not the address the hub listens on, the real spool, intake, delivery jobs and status sink."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from hub.adapters.sms.inbound import INBOUND_PATH
from hub.outbound import OptedOut, enqueue_outbound
from hub.storage.tables import (
    Conversation,
    DeliveryEvent,
    Identity,
    OutboxItem,
)
from tests.support.stored import attachment_rows
from tests.support.twilio_api import signature

from .conftest import (
    CITIZEN,
    CITY_NUMBER,
    PUBLIC_URL,
    SmsHub,
    conversations,
    messages,
    spooled,
    wait_until,
)

SHIPPED_RULES = Path(__file__).resolve().parents[3] / "routing_rules"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


async def test_a_signed_text_is_answered_with_twiml_and_becomes_a_conversation(
        sms: SmsHub) -> None:
    answer = await sms.text("The streetlight on Elm St is out")
    assert answer.status == 200 and answer.text == TWIML
    assert answer.headers["Content-Type"].startswith("text/xml")
    (entry,) = await spooled(sms.hub)  # committed before the answer
    assert entry.channel == "sms" and entry.state == "pending"
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    (message,) = await messages(sms.hub)
    assert conversation.channel == "sms"
    assert (message.sender, message.body) == (CITIZEN, "The streetlight on Elm St is out")
    async with sms.hub.db.read() as session:
        (identity,) = await session.scalars(select(Identity))
    assert (identity.channel, identity.address) == ("sms", CITIZEN)

    # The next text continues the citizen's live conversation.
    await sms.text("It is the one at the corner")
    await sms.work_spool()
    assert len(await conversations(sms.hub)) == 1 and len(await messages(sms.hub)) == 2


async def test_a_bad_or_missing_signature_gets_403_and_nothing_is_stored(sms: SmsHub) -> None:
    params = sms.api.inbound_params(CITIZEN, "Flipped", to=CITY_NUMBER)
    good = signature(sms.api.auth_token, PUBLIC_URL + INBOUND_PATH, params)
    raw = bytearray(urlencode(params).encode())
    at = raw.index(b"Flipped")
    raw[at] ^= 0x01  # one flipped bit in the body: "Glipped"
    headers = {"X-Twilio-Signature": good,
               "Content-Type": "application/x-www-form-urlencoded"}
    url = sms.url(INBOUND_PATH)
    async with sms.api.session.post(url, data=bytes(raw), headers=headers) as flipped:
        assert flipped.status == 403
    # Signed for the address the hub listens on, not the public URL Twilio was given.
    wrong_url = await sms.post(params, sign_url=url)
    assert wrong_url.status == 403
    async with sms.api.session.post(url, data=params) as unsigned:
        assert unsigned.status == 403
    assert (await sms.post(params, signature_override="x" * 28)).status == 403
    assert await spooled(sms.hub) == []
    await sms.work_spool()
    assert await messages(sms.hub) == []
    metrics = await (await sms.client.get("/metrics")).text()
    rejected = [line for line in metrics.splitlines()
                if line.startswith("hub_webhook_rejected_total") and INBOUND_PATH in line]
    assert rejected and sum(float(line.rsplit(" ", 1)[1]) for line in rejected) >= 4
    # And the untouched request is taken.
    assert (await sms.post(params)).status == 200


async def test_twenty_concurrent_retries_of_one_sid_store_one_message(sms: SmsHub) -> None:
    params = sms.api.inbound_params(CITIZEN, "Water leak on 3rd Ave", to=CITY_NUMBER)
    answers = await asyncio.gather(*(sms.post(params) for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert len(await spooled(sms.hub)) == 1
    await sms.work_spool()
    later = await sms.post(params)  # Twilio's retry after the message was worked
    assert later.status == 200 and later.text == TWIML
    await sms.work_spool()
    (message,) = await messages(sms.hub)
    assert message.provider_id == params["MessageSid"]
    assert len(await conversations(sms.hub)) == 1


async def test_a_staff_reply_reaches_twilio_and_status_callbacks_only_move_forward(
        sms: SmsHub) -> None:
    await sms.text("Graffiti on the library wall")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    answer = await sms.reply(conversation.id, "We will clean it this week.")
    assert answer.status == 202
    await sms.deliver()
    (request,) = sms.api.requests_to("Messages.json", "POST")
    assert request.form["To"] == CITIZEN and request.form["From"] == CITY_NUMBER
    assert request.form["Body"] == "We will clean it this week."
    assert request.form["StatusCallback"] == PUBLIC_URL + "/webhooks/twilio/status"
    (sid,) = sms.api.messages
    (outbound,) = await messages(sms.hub, "outbound")
    assert (outbound.provider_id, outbound.delivery_status) == (sid, "sent")

    # Twilio's callbacks arrive out of order: delivered first, then sent.
    assert (await sms.status(sid, "delivered")).status == 204
    assert (await sms.status(sid, "sent")).status == 204
    (outbound,) = await messages(sms.hub, "outbound")
    assert outbound.delivery_status == "delivered"
    async with sms.hub.db.read() as session:
        events = list(await session.scalars(select(DeliveryEvent.status).where(
            DeliveryEvent.message_id == outbound.id).order_by(DeliveryEvent.id)))
    assert events[-2:] == ["delivered", "sent"]  # both kept, the message did not go back
    # A callback that is not signed for the public URL changes nothing.
    forged = await sms.api.send_status(sid, "failed", url=sms.url("/webhooks/twilio/status"))
    assert forged.status == 403
    (outbound,) = await messages(sms.hub, "outbound")
    assert outbound.delivery_status == "delivered"


async def test_an_undelivered_callback_keeps_twilios_error_code(sms: SmsHub) -> None:
    await sms.text("Broken bench in the park")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    await sms.reply(conversation.id, "Thanks, noted.")
    await sms.deliver()
    (sid,) = sms.api.messages
    await sms.status(sid, "undelivered", error_code=30007)
    (outbound,) = await messages(sms.hub, "outbound")
    assert outbound.delivery_status == "undelivered"
    assert outbound.delivery_error == "Twilio error 30007"


async def test_an_invalid_number_goes_to_the_dead_letter_with_twilios_code(sms: SmsHub) -> None:
    await sms.text("Noise at night")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    sms.api.reject_next(21211)
    await sms.reply(conversation.id, "Which street?")
    await sms.deliver()
    assert sms.api.messages == {} and len(sms.api.requests_to("Messages.json")) == 1
    async with sms.hub.db.read() as session:
        (item,) = await session.scalars(select(OutboxItem))
    assert item.state == "dead" and "21211" in (item.last_error or "")
    dead = await (await sms.client.get("/api/v1/outbox?state=dead", headers=sms.headers)).json()
    (shown,) = dead["items"]
    assert "21211" in shown["last_error"] and "Invalid 'To' Phone Number" in shown["last_error"]
    (outbound,) = await messages(sms.hub, "outbound")
    assert outbound.delivery_status == "failed"


async def test_a_503_then_201_is_sent_once_after_a_retry(sms: SmsHub) -> None:
    await sms.text("Tree fell on the road")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    sms.api.fail_next(1, 503, only="Messages.json")
    await sms.reply(conversation.id, "A crew is on the way.")

    async def sent() -> bool:
        return len(sms.api.messages) == 1 and [
            m.delivery_status for m in await messages(sms.hub, "outbound")] == ["sent"]

    await wait_until(sent)  # the sweeper hands the item out again after its backoff
    assert [r.status for r in sms.api.requests_to("Messages.json", "POST")] == [503, 201]
    await asyncio.sleep(0.5)  # no third try comes
    assert len(sms.api.requests_to("Messages.json", "POST")) == 2
    async with sms.hub.db.read() as session:
        (item,) = await session.scalars(select(OutboxItem))
    assert item.state == "sent" and item.attempts == 2


async def test_a_poison_payload_is_stored_flagged_and_the_texts_behind_it_go_through(
        sms: SmsHub) -> None:
    poison = {"MessageSid": "not-a-sid", "From": "\U0001f4a9" * 50, "To": "\x00",
              "Body": "\x00\ud7ff" + "x" * 5000, "NumMedia": "-7", "MediaUrl0": "javascript:1"}
    assert (await sms.post(poison)).status == 200
    for index in range(3):
        assert (await sms.text(f"Text {index} behind the poison")).status == 200
    await sms.work_spool()
    stored = await messages(sms.hub)
    assert len(stored) == 4
    flagged, *texts = stored
    assert "malformed" in flagged.flags and flagged.sender == "unknown"
    assert [m.body for m in texts] == [f"Text {i} behind the poison" for i in range(3)]
    assert all(not m.flags for m in texts)
    assert all(entry.state == "done" for entry in await spooled(sms.hub))
    # The poison's conversation is its own; the citizen's texts share theirs.
    assert len({m.conversation_id for m in texts}) == 1
    assert flagged.conversation_id != texts[0].conversation_id
    # Posted again (same body): recognised, stored once.
    assert (await sms.post(poison)).status == 200
    await sms.work_spool()
    assert len(await messages(sms.hub)) == 4


async def set_status(sms: SmsHub, conversation_id: int, status: str) -> None:
    async with sms.hub.db.transaction() as session:
        (await session.get_one(Conversation, conversation_id)).status = status


async def test_a_reference_in_a_text_joins_that_request_not_the_latest(sms: SmsHub) -> None:
    await sms.text("Pothole on Main St")
    await sms.work_spool()
    (first,) = await conversations(sms.hub)
    await set_status(sms, first.id, "closed")
    await sms.text("Another thing: a broken sign on 2nd")  # a closed one is not continued
    await sms.work_spool()
    _, second = await conversations(sms.hub)
    await set_status(sms, first.id, "open")  # both live now; the latest is the second
    await sms.text("And the sign fell over")
    await sms.text(f"The pothole is still there, see #{first.reference.lower()}")
    await sms.work_spool()
    *_, by_latest, by_reference = await messages(sms.hub)
    assert by_reference.conversation_id == first.id
    assert by_latest.conversation_id == second.id
    # Someone else quoting that reference does not join the citizen's request.
    await sms.text(f"About #{first.reference}", sender="+14155550199")
    await sms.work_spool()
    assert (await messages(sms.hub))[-1].conversation_id not in (first.id, second.id)


PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(200)) * 10


async def attachments(sms: SmsHub) -> list[tuple[str, str, int, str]]:
    return await attachment_rows(sms.hub)


async def test_an_mms_with_two_media_files_gives_two_attachments(sms: SmsHub) -> None:
    answer = await sms.text("Look at this", media=[(PHOTO, "image/jpeg"), (PNG, "image/png")])
    assert answer.status == 200
    await sms.work_spool()
    text, media = await messages(sms.hub)
    assert text.body == "Look at this" and media.conversation_id == text.conversation_id
    assert await attachments(sms) == [
        ("mms-1.jpg", "image/jpeg", len(PHOTO), f"{text.provider_id}/media"),
        ("mms-2.png", "image/png", len(PNG), f"{text.provider_id}/media")]
    fetches = sms.api.requests_to("/Media/", "GET")
    assert len(fetches) == 2 and all(r.headers["Authorization"].startswith("Basic ")
                                     for r in fetches)
    assert len(sms.api.requests_to("/media-files/", "GET")) == 2  # the redirect was followed
    (conversation,) = await conversations(sms.hub)
    detail = await (await sms.client.get(f"/api/v1/conversations/{conversation.id}",
                                         headers=sms.headers)).json()
    shown = [a["filename"] for m in detail["messages"] for a in m["attachments"]]
    assert shown == ["mms-1.jpg", "mms-2.png"]


async def test_media_that_cannot_be_fetched_never_hold_the_text_and_come_later(
        sms: SmsHub) -> None:
    sms.api.fail_next(2, 503, only="/Media/")  # Twilio's media down for a while
    await sms.text("Flooded underpass", media=[(PHOTO, "image/jpeg")])
    await sms.work_spool()
    (text,) = await messages(sms.hub)
    assert text.body == "Flooded underpass" and await attachments(sms) == []
    text_entry, media_entry = await spooled(sms.hub)
    assert text_entry.state == "done" and media_entry.state == "pending"
    assert media_entry.attempts == 1

    async def fetched() -> bool:
        await sms.work_spool()
        return len(await attachments(sms)) == 1

    await wait_until(fetched, timeout=30)  # the spool worker tried the media item again
    assert [m.body for m in await messages(sms.hub)] == ["Flooded underpass", ""]
    (only,) = await conversations(sms.hub)
    assert {m.conversation_id for m in await messages(sms.hub)} == {only.id}


async def test_help_is_answered_at_once_with_the_help_text(sms: SmsHub) -> None:
    answer = await sms.text(" help ")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/xml")
    help_text = sms.hub.settings.sms.help_text
    assert answer.text == ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
                           f"{help_text}</Message></Response>")
    await sms.work_spool()
    (message,) = await messages(sms.hub)  # stored with the conversation, flagged
    assert "keyword_help" in message.flags and message.automatic
    await sms.deliver()
    assert sms.api.requests_to("Messages.json") == []  # no acknowledgment, no auto-reply


async def opt_out(sms: SmsHub, address: str) -> None:
    """Opted out directly in the database, as a STOP text does through the intake."""
    async with sms.hub.db.transaction() as session:
        (identity,) = await session.scalars(select(Identity).where(Identity.address == address))
        identity.opted_out = True


async def test_a_staff_reply_to_an_opted_out_number_is_refused_and_nothing_is_sent(
        sms: SmsHub) -> None:
    await sms.text("Pothole again")
    await sms.text("STOP")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    stop = (await messages(sms.hub))[-1]
    assert stop.body == "STOP" and "keyword_stop" in stop.flags
    await opt_out(sms, CITIZEN)
    answer = await sms.reply(conversation.id, "We fixed it.")
    assert answer.status == 422
    await sms.deliver()
    assert sms.api.requests_to("Messages.json") == []
    assert await messages(sms.hub, "outbound") == []
    async with sms.hub.db.read() as session:
        assert list(await session.scalars(select(OutboxItem))) == []


async def test_the_refusal_says_opted_out(sms: SmsHub) -> None:
    await sms.text("Pothole again")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    await opt_out(sms, CITIZEN)
    answer = await sms.reply(conversation.id, "We fixed it.")
    assert (await answer.json())["error"]["code"] == "opted_out"


async def test_automatic_messages_to_an_opted_out_number_are_not_queued(sms: SmsHub) -> None:
    await sms.text("Pothole again")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    await opt_out(sms, CITIZEN)
    async with sms.hub.db.transaction() as session:
        stored = await session.get_one(Conversation, conversation.id)
        with pytest.raises(OptedOut):  # the acknowledgment and auto-replies skip on this
            await enqueue_outbound(session, stored, "Thanks!", automatic=True)


async def test_stop_and_start_texts_opt_the_number_out_and_back_in(sms: SmsHub) -> None:
    await sms.text("Pothole again")
    await sms.text("  Stop ")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    refused = await sms.reply(conversation.id, "We fixed it.")
    assert refused.status == 422
    assert (await refused.json())["error"]["code"] == "opted_out"
    await sms.text("START")
    await sms.work_spool()
    assert (await sms.reply(conversation.id, "We fixed it.")).status == 202
    await sms.deliver()
    assert [r.form["Body"] for r in sms.api.requests_to("Messages.json", "POST")] == ["We fixed it."]


async def test_a_keyword_alone_never_opens_a_request_in_a_queue(sms: SmsHub) -> None:
    await sms.text("STOP", sender="+14155550999")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    assert conversation.status == "closed" and conversation.tags == ["keyword-stop"]
    async with sms.hub.db.read() as session:
        (identity,) = await session.scalars(
            select(Identity).where(Identity.address == "+14155550999"))
    assert identity.opted_out


@pytest.fixture
def acknowledging(settings_data: dict[str, dict[str, object]]) -> None:
    """`[sms] acknowledge = true`, as shipped (the shared test settings turn it off)."""
    settings_data["sms"] = {"acknowledge": True}


async def test_a_new_text_conversation_gets_one_short_acknowledgment(
        acknowledging: None, sms: SmsHub) -> None:
    await sms.text("The traffic light on 5th is stuck on red")
    await sms.work_spool()
    await sms.deliver()
    (conversation,) = await conversations(sms.hub)
    (ack,) = sms.api.requests_to("Messages.json", "POST")
    assert ack.form["To"] == CITIZEN and conversation.reference in ack.form["Body"]
    assert ack.form["Body"].startswith("City Hall: we received your message.")
    (outbound,) = await messages(sms.hub, "outbound")
    assert outbound.automatic and outbound.subject is None
    # More texts on the same request are not acknowledged again.
    await sms.text("It has been like this for an hour")
    await sms.work_spool()
    await sms.deliver()
    assert len(sms.api.requests_to("Messages.json", "POST")) == 1


@pytest.fixture
def shipped_rules(settings_data: dict[str, dict[str, object]]) -> None:
    """The repository's routing_rules/ (language detection, the shipped templates)."""
    settings_data["routing"] = {**settings_data["routing"], "rules_dir": str(SHIPPED_RULES)}


async def test_the_acknowledgment_speaks_the_citizens_language(
        acknowledging: None, shipped_rules: None, sms: SmsHub) -> None:
    await sms.text("Hay un bache enorme en la calle Mayor, delante de la panadería, y los "
                   "coches tienen que esquivarlo todos los días")
    await sms.work_spool()
    await sms.deliver()
    (conversation,) = await conversations(sms.hub)
    assert conversation.language == "es"
    (ack,) = sms.api.requests_to("Messages.json", "POST")
    assert ack.form["Body"].startswith("Ayuntamiento: hemos recibido su mensaje.")


async def test_a_keyword_is_never_acknowledged(acknowledging: None, sms: SmsHub) -> None:
    for keyword in ("STOP", "HELP", "START"):
        await sms.text(keyword, sender="+14155550777")
        await sms.work_spool()
    await sms.deliver()
    assert sms.api.requests_to("Messages.json", "POST") == []


async def test_a_reply_longer_than_max_segments_is_refused_at_once(sms: SmsHub) -> None:
    await sms.text("Pothole again")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    too_long = "The crew will come on Monday. " * 60  # 1,800 GSM-7 characters: 12 segments
    answer = await sms.reply(conversation.id, too_long)
    assert answer.status == 422
    error = (await answer.json())["error"]
    assert error["code"] == "too_long" and "12 SMS segments" in error["message"]
    assert await messages(sms.hub, "outbound") == []
    # One euro sign makes the text GSM-7 with an extension; an emoji makes it UCS-2.
    assert (await sms.reply(conversation.id, "Fixed \U0001f44d " * 100)).status == 422
    assert (await sms.reply(conversation.id, "Fixed. " * 100)).status == 202


async def test_twilio_saying_opted_out_marks_the_number_and_refuses_the_next_reply(
        sms: SmsHub) -> None:
    await sms.text("Pothole again")
    await sms.work_spool()
    (conversation,) = await conversations(sms.hub)
    sms.api.reject_next(21610)  # the citizen texted STOP to Twilio, not through us
    assert (await sms.reply(conversation.id, "We fixed it.")).status == 202
    await sms.deliver()
    async with sms.hub.db.read() as session:
        (item,) = await session.scalars(select(OutboxItem))
        (identity,) = await session.scalars(select(Identity))
    assert item.state == "dead" and "21610" in (item.last_error or "")
    assert "opted out" in (item.last_error or "")
    assert identity.opted_out and identity.opted_out_at is not None
    refused = await sms.reply(conversation.id, "Are you there?")
    assert refused.status == 422 and (await refused.json())["error"]["code"] == "opted_out"
    assert len(sms.api.requests_to("Messages.json", "POST")) == 1
