"""The Telegram channel end to end, in webhook mode and in polling mode, on SQLite and PostgreSQL:
python-telegram-bot talking HTTP to the Bot API stand-in, the real spool, intake, delivery jobs
and outbox."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from tests.support.corpus import CORPUS
from tests.support.stored import attachment_rows

from .conftest import (
    CHAT,
    SECRET,
    TgHub,
    conversations,
    identities,
    messages,
    outbox,
    spooled,
    wait_until,
)

# Sends, and the webhook's own checks, do not depend on how updates come in: one mode is enough.
webhook_only = pytest.mark.parametrize("mode", ["webhook"])

PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40
OGG = b"OggS\x00\x02" + bytes(range(200)) * 5


def corpus_updates() -> list[dict[str, Any]]:
    path = CORPUS / "opsdroid-telegram" / "json_response_example.derived.json"
    return list(json.loads(path.read_text()))


def sent_texts(tg: TgHub) -> list[tuple[int, str]]:
    return [(m["chat"]["id"], m.get("text", "")) for m in tg.api.sent]


async def attachments(tg: TgHub) -> list[tuple[str, str, int, str]]:
    return await attachment_rows(tg.hub)


async def test_the_corpus_updates_become_one_conversation_and_ignored_records(tg: TgHub) -> None:
    updates = corpus_updates()
    await tg.deliver(*copy.deepcopy(updates))
    await tg.work_spool()  # the photo's files item, after its text
    stored = {m.provider_id: m for m in await messages(tg.hub)}
    # 19 updates, one of them twice (639974089): 18 stored, and the photo's files item.
    assert len(stored) == 19
    private = [m for m in stored.values() if m.sender == "639889348"]
    assert {m.provider_id for m in private} == {
        "639889348:1232", "639889348:1247:edit:1603818330", "639889348:1266",
        "639889348:1266/media", "639889348:1267", "639889348:1272"}
    assert stored["639889348:1232"].body == "Hello"
    assert len({m.conversation_id for m in private}) == 1  # the chat's live conversation
    edit = stored["639889348:1247:edit:1603818330"]
    assert "edited" in edit.flags and edit.meta["edit_of"] == "639889348:1247"
    ignored = [m for m in stored.values() if "ignored" in m.flags]
    assert len(ignored) == 11
    assert {m.meta["ignored"] for m in ignored} == {"supergroup_chat", "group_chat",
                                                      "channel_post"}
    by_id = {c.id: c for c in await conversations(tg.hub)}
    assert all(by_id[m.conversation_id].status == "closed" for m in ignored)
    # The two 2020 polls python-telegram-bot cannot read any more: kept raw and flagged.
    malformed = [m for m in stored.values() if "malformed" in m.flags]
    assert {m.provider_id for m in malformed} == {"update:639974103", "update:639974106"}
    assert all(m.raw for m in malformed)
    # The photo's file id is not the stand-in's: the files item says so, the text stands.
    assert "media_unavailable" in stored["639889348:1266/media"].flags
    assert all(entry.state == "done" for entry in await spooled(tg.hub))
    # The same messages again under new update ids (as after a switch of mode, or a webhook
    # Telegram redelivers once polling took over): the chat + message id dedupes them.
    again = [u | {"update_id": tg.next_update_id()} for u in copy.deepcopy(updates[:2])]
    await tg.deliver(*again)
    assert len(await messages(tg.hub)) == 19
    assert len(await spooled(tg.hub)) == 18 + 1 + 2  # updates, the files item, the two again


@webhook_only
async def test_a_wrong_or_missing_secret_gets_403_and_nothing_is_stored(tg: TgHub) -> None:
    update = tg.api.push_message(CHAT, "Pothole on Main St")
    tg.api.pending.remove(update)
    assert (await tg.post(update, secret="wrong")).status == 403
    assert (await tg.post(update, secret=None)).status == 403
    assert (await tg.post(update, secret=SECRET[:-1])).status == 403
    assert await spooled(tg.hub) == []
    assert (await tg.post(update)).status == 200
    assert len(await spooled(tg.hub)) == 1


async def test_the_same_update_twenty_times_at_once_is_one_message(tg: TgHub) -> None:
    update = tg.api.push_message(CHAT, "Water leak on 3rd Ave")
    tg.api.pending.remove(update)
    if tg.mode == "webhook":
        answers = await asyncio.gather(*(tg.post(update) for _ in range(20)))
        assert [a.status for a in answers] == [200] * 20
        await tg.work_spool()
    else:
        await tg.deliver(*([update] * 20))
    assert len(await spooled(tg.hub)) == 1
    (message,) = await messages(tg.hub)
    assert message.provider_id == f"{CHAT}:{update['message']['message_id']}"
    assert message.body == "Water leak on 3rd Ave" and message.sender == str(CHAT)
    (conversation,) = await conversations(tg.hub)
    assert conversation.channel == "telegram" and conversation.status == "open"
    (identity,) = await identities(tg.hub)
    assert (identity.channel, identity.address) == ("telegram", str(CHAT))


async def test_a_staff_reply_reaches_send_message_and_a_reply_to_it_threads(tg: TgHub) -> None:
    await tg.message("The streetlight on Elm St is out", first_name="Ada")
    (first,) = await conversations(tg.hub)
    await tg.send_all()  # the acknowledgment, as on the other channels
    ((chat, ack),) = sent_texts(tg)
    assert chat == CHAT and first.reference in ack
    answer = await tg.reply(first.id, "We <b>will</b> fix it & tell you.")
    assert answer.status == 202
    await tg.send_all()
    request = tg.api.calls("sendMessage")[-1]
    assert request.params["text"] == "We <b>will</b> fix it & tell you."  # as typed
    assert "parse_mode" not in request.params
    ours = tg.api.sent[-1]
    outbound = (await messages(tg.hub, "outbound"))[-1]
    assert outbound.provider_id == str(ours["message_id"]) and outbound.delivery_status == "sent"

    # A second request opens (the first is closed), then the citizen replies to our message in
    # the first: the reply goes there, not to the chat's latest conversation.
    async with tg.hub.db.transaction() as session:
        (await session.get_one(type(first), first.id)).status = "resolved"
    await tg.message("Another thing: a broken bench", )
    await tg.message("Thanks! When?", reply_to_message=ours)
    *_, latest, reply = await messages(tg.hub)
    assert reply.conversation_id == first.id and reply.thread_rule == "references"
    assert latest.conversation_id == first.id  # reopened within the window: it continued


@webhook_only
async def test_a_long_reply_is_split_at_4096_characters(tg: TgHub) -> None:
    await tg.message("Tell me everything")
    (conversation,) = await conversations(tg.hub)
    await tg.send_all()
    text = ("word " * 1000).strip()  # 4999 characters
    assert (await tg.reply(conversation.id, text)).status == 202
    await tg.send_all()
    parts = [t for _, t in sent_texts(tg)[1:]]
    assert len(parts) == 2 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts) == text


async def test_a_photo_document_and_voice_note_become_attachments(tg: TgHub) -> None:
    photo = tg.api.add_file(PHOTO, kind="photos", file_name="photo.jpg")
    await tg.message(caption="The hole", photo=[
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 60, "file_size": 10},
        tg.api.photo_entry(photo)])
    doc = tg.api.add_file(b"%PDF-1.4 permit", file_name="permit.pdf",
                          mime_type="application/pdf")
    await tg.message(document=tg.api.document_entry(doc))
    voice = tg.api.add_file(OGG, kind="voice", file_name="voice.oga", mime_type="audio/ogg")
    await tg.message(voice={"file_id": voice.file_id, "file_unique_id": "v", "duration": 3,
                            "mime_type": "audio/ogg", "file_size": len(OGG)})
    await tg.work_spool()
    found = await attachments(tg)
    assert [(name, kind, size) for name, kind, size, _ in found] == [
        ("photo.jpg", "image/jpeg", len(PHOTO)), ("permit.pdf", "application/pdf", 15),
        ("voice.ogg", "audio/ogg", len(OGG))]
    assert all(provider.endswith("/media") for *_, provider in found)
    stored = await messages(tg.hub)
    assert stored[0].body == "The hole"
    assert len({m.conversation_id for m in stored}) == 1
    assert len(tg.api.calls("getFile")) == 3  # the largest photo size only


async def test_a_failed_download_keeps_the_text_and_is_tried_again(tg: TgHub) -> None:
    photo = tg.api.add_file(PHOTO, kind="photos", file_name="photo.jpg")
    tg.api.fail_next(1, 502, only="getFile")
    await tg.message(caption="Look", photo=[tg.api.photo_entry(photo)])
    (text,) = await messages(tg.hub)
    assert text.body == "Look"
    media = [e for e in await spooled(tg.hub) if e.dedupe_key.endswith("/media")]
    assert [(e.state, e.attempts) for e in media] == [("pending", 1)]
    async with tg.hub.db.transaction() as session:  # due now, instead of in two seconds
        (await session.get_one(type(media[0]), media[0].id)).next_attempt_at = None
    await tg.work_spool()
    assert [name for name, *_ in await attachments(tg)] == ["photo.jpg"]


@webhook_only
async def test_a_file_over_the_cap_is_dropped_and_the_citizen_told(tg: TgHub) -> None:
    big = tg.api.add_file(b"x" * 30_000_000, file_name="video.mp4", mime_type="video/mp4")
    await tg.message(document=tg.api.document_entry(big))
    await tg.work_spool()
    assert await attachments(tg) == []
    assert tg.api.calls("getFile") == []  # its size said enough
    await tg.send_all()
    ((_, ack),) = sent_texts(tg)
    assert "video.mp4" in ack


async def test_an_edit_and_a_location_join_the_chat_and_a_group_message_is_ignored(
        tg: TgHub) -> None:
    update = await tg.message("Pothole on Main St 12")
    edited = copy.deepcopy(update["message"]) | {"text": "Pothole on Main St 21",
                                                 "edit_date": update["message"]["date"] + 60}
    group = {"id": -100200300, "title": "Neighbours", "type": "supergroup"}
    await tg.deliver({"update_id": tg.next_update_id(), "edited_message": edited}, {
        "update_id": tg.next_update_id(), "message": {
            "message_id": 5, "date": 1700000000, "chat": group, "text": "hello bot",
            "from": {"id": 42, "is_bot": False, "first_name": "Bo"}}})
    await tg.message(location={"latitude": 56.159849, "longitude": 10.210071})
    original, edit, ignored, location = await messages(tg.hub)
    # The edit: a message of its own beside the original, in its conversation.
    assert (original.body, edit.body) == ("Pothole on Main St 12", "Pothole on Main St 21")
    assert "edited" in edit.flags and edit.meta["edit_of"] == original.provider_id
    # The location: structured data, and coordinates with a map link for staff.
    assert location.meta["location"] == {"latitude": 56.159849, "longitude": 10.210071}
    assert "56.159849, 10.210071" in location.body
    assert "https://www.openstreetmap.org/?mlat=56.159849&mlon=10.210071" in location.body
    assert {m.conversation_id for m in (edit, location)} == {original.conversation_id}
    # The group message: kept for the record, never a request, never answered.
    assert ignored.flags == ["ignored", "supergroup_chat"]
    chat, group_conversation = await conversations(tg.hub)
    assert (chat.status, group_conversation.status) == ("open", "closed")
    await tg.send_all()
    assert [c for c, _ in sent_texts(tg)] == [CHAT]  # the chat's acknowledgment only


async def test_start_gets_a_welcome_in_the_citizens_language_and_no_request(tg: TgHub) -> None:
    user = {"id": CHAT, "is_bot": False, "first_name": "Ana", "language_code": "es"}
    await tg.message("/start", **{"from": user})
    (conversation,) = await conversations(tg.hub)
    assert conversation.status == "closed" and conversation.tags == ["keyword-start"]
    await tg.send_all()
    ((chat, text),) = sent_texts(tg)
    assert chat == CHAT and text.startswith("Bienvenido")


async def test_start_with_a_reference_links_the_chat_to_that_request(tg: TgHub) -> None:
    # A request that came by another channel, from a contact with no Telegram.
    from hub.model import InboundMessage

    accepted = await tg.hub.intake.accept(InboundMessage(
        channel="email", provider_id="<a@example.org>", sender="ada@example.org",
        text="Broken sign", subject="Broken sign"))
    await tg.message(f"/start {accepted.reference}")
    stored = await messages(tg.hub)
    assert [m.conversation_id for m in stored] == [accepted.conversation_id] * 2
    assert len(await conversations(tg.hub)) == 1
    assert {(i.channel, i.address) for i in await identities(tg.hub)} == {
        ("email", "ada@example.org"), ("telegram", str(CHAT))}
    await tg.send_all()
    assert [c for c, _ in sent_texts(tg)] == [CHAT]  # the welcome
    answer = await tg.reply(accepted.conversation_id, "Fixed tomorrow.", channel="telegram")
    assert answer.status == 202
    await tg.send_all()
    assert sent_texts(tg)[-1] == (CHAT, "Fixed tomorrow.")


@webhook_only
async def test_start_with_an_unknown_reference_links_nothing(tg: TgHub) -> None:
    await tg.message("/start ABCDEFGHJK")
    (conversation,) = await conversations(tg.hub)
    assert conversation.status == "closed"
    (identity,) = await identities(tg.hub)
    assert identity.address == str(CHAT)


async def test_the_bot_blocked_opts_out_and_unblocked_opts_back_in(tg: TgHub) -> None:
    await tg.message("Noise at night")
    (conversation,) = await conversations(tg.hub)
    await tg.send_all()

    def member(status: str) -> dict[str, Any]:
        user = {"id": CHAT, "is_bot": False, "first_name": "Ada"}
        bot = tg.api.bot_user
        return {"update_id": tg.next_update_id(), "my_chat_member": {
            "chat": {"id": CHAT, "first_name": "Ada", "type": "private"}, "from": user,
            "date": 1700000000,
            "old_chat_member": {"user": bot, "status": "member"},
            "new_chat_member": {"user": bot, "status": status, "until_date": 0}}}

    await tg.deliver(member("kicked"))
    (identity,) = await identities(tg.hub)
    assert identity.opted_out
    answer = await tg.reply(conversation.id, "Are you there?")
    assert answer.status == 422
    assert (await answer.json())["error"]["code"] == "opted_out"
    await tg.deliver(member("member"))
    (identity,) = await identities(tg.hub)
    assert not identity.opted_out
    assert (await tg.reply(conversation.id, "Are you there?")).status == 202
    stored = await messages(tg.hub)
    assert all(m.conversation_id == conversation.id for m in stored)  # staff see both


@webhook_only
async def test_a_429_is_sent_after_telegrams_wait_once(tg: TgHub) -> None:
    await tg.message("Tree fell on the road")
    (conversation,) = await conversations(tg.hub)
    await tg.send_all()
    tg.api.rate_limit(1)
    await tg.reply(conversation.id, "A crew is on the way.")

    async def sent() -> bool:
        return [m.delivery_status for m in await messages(tg.hub, "outbound")][-1] == "sent"

    await wait_until(sent)
    first, second = tg.api.calls("sendMessage")[-2:]
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.9  # Telegram's retry_after, not the 0.05 s backoff
    await asyncio.sleep(0.3)
    assert [t for _, t in sent_texts(tg)].count("A crew is on the way.") == 1


@webhook_only
async def test_a_blocked_bot_is_dead_with_the_reason_and_the_next_reply_is_422(
        tg: TgHub) -> None:
    await tg.message("Graffiti on the wall")
    (conversation,) = await conversations(tg.hub)
    await tg.send_all()
    tg.api.block(CHAT)
    await tg.reply(conversation.id, "We will clean it.")
    await tg.send_all()
    item = (await outbox(tg.hub))[-1]
    assert item.state == "dead" and "blocked" in (item.last_error or "")
    (identity,) = await identities(tg.hub)
    assert identity.opted_out
    answer = await tg.reply(conversation.id, "Hello?")
    assert answer.status == 422 and (await answer.json())["error"]["code"] == "opted_out"


@webhook_only
async def test_chat_not_found_is_permanent(tg: TgHub) -> None:
    await tg.message("Broken bench")
    (conversation,) = await conversations(tg.hub)
    await tg.send_all()
    tg.api.fail_chat(CHAT, 400, "Bad Request: chat not found")
    await tg.reply(conversation.id, "Which park?")
    await tg.send_all()
    item = (await outbox(tg.hub))[-1]
    assert item.state == "dead" and "chat not found" in (item.last_error or "").lower()
    (identity,) = await identities(tg.hub)
    assert not identity.opted_out


async def test_a_hub_that_cannot_take_input_makes_telegram_send_again(tg: TgHub) -> None:
    tg.hub.spool.max_backlog = 0  # the spool refuses (Busy), as when it is full
    tg.adapter.refused_wait = 0.1
    update = tg.api.push_message(CHAT, "Flooded underpass")
    if tg.mode == "webhook":
        tg.api.pending.remove(update)
        answer = await tg.post(update)
        assert answer.status == 503 and int(answer.headers["Retry-After"]) > 0
    else:  # the offset does not move: the update stays with Telegram
        await tg.api.wait_for_requests(4, "getupdates")  # refused, asked again, refused...
        assert tg.api.pending == [update]
    assert await spooled(tg.hub) == []
    tg.hub.spool.max_backlog = 100
    if tg.mode == "webhook":
        await tg.deliver(update)
    else:
        await wait_until(tg._confirmed)
        await tg.work_spool()
    (message,) = await messages(tg.hub)
    assert message.body == "Flooded underpass"
