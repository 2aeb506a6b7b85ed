"""The chat's HTTP fallback (for proxies that block WebSockets), on SQLite and PostgreSQL: hello,
send, long-poll for a staff reply, typing and seen, attachments checked by content and size."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from hub.adapters.webchat import fallback
from hub.storage.tables import Attachment, Message

from .conftest import PUBLIC_URL, ChatHub, wait_until

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + b"0" * 2000


async def post(chat: ChatHub, path: str, token: str | None = None,
               **frame: Any) -> aiohttp.ClientResponse:
    headers = {"X-Chat-Token": token} if token else {}
    return await chat.client.post(f"/chat/api/{path}", json={"v": 1, **frame}, headers=headers)


async def hello(chat: ChatHub, **fields: Any) -> dict[str, Any]:
    answer = await post(chat, "hello", type="hello", **fields)
    assert answer.status == 200
    assert answer.headers["Cache-Control"] == "no-store"
    return dict(await answer.json())


async def test_send_and_long_poll_for_the_staff_reply(chat: ChatHub,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fallback, "POLL_SECONDS", 5.0)
    welcome = await hello(chat)
    token = welcome["token"]
    sent = await post(chat, "messages", token, type="message", client_id="http-1",
                      body="Bins not collected")
    assert sent.status == 200
    ack = await sent.json()
    assert ack["type"] == "ack" and ack["client_id"] == "http-1"
    again = await (await post(chat, "messages", token, type="message", client_id="http-1",
                              body="Bins not collected")).json()
    assert again == ack
    assert len(await chat.messages(Message.direction == "inbound")) == 1
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    poll = asyncio.create_task(chat.client.get(f"/chat/api/events?after={ack['id']}",
                                               headers={"X-Chat-Token": token}))
    await asyncio.sleep(0.3)  # the poll waits
    assert not poll.done()
    assert (await chat.reply(conversation.id, "Collected tomorrow")).status == 202
    answer = await asyncio.wait_for(poll, 10)
    batch = await answer.json()
    assert batch["type"] == "batch"
    (pushed,) = [e for e in batch["events"] if e["type"] == "message"]
    assert pushed["body"] == "Collected tomorrow" and pushed["direction"] == "outbound"
    # A poll after a gap answers at once with what came after `after`.
    missed = await (await chat.client.get(f"/chat/api/events?after={ack['id']}",
                                          headers={"X-Chat-Token": token})).json()
    assert [e["id"] for e in missed["events"]] == [pushed["id"]]
    seen = await post(chat, "seen", token, type="seen", id=pushed["id"])
    assert seen.status == 200

    async def delivered() -> bool:
        (reply,) = await chat.messages(Message.id == pushed["id"])
        return reply.delivery_status == "delivered"

    await wait_until(delivered)
    resumed = await hello(chat, token=token)
    assert resumed["visitor"] == welcome["visitor"]
    assert [m["body"] for m in resumed["messages"]] == ["Bins not collected",
                                                        "Collected tomorrow"]


async def test_an_empty_poll_comes_back_empty(chat: ChatHub,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fallback, "POLL_SECONDS", 0.2)
    token = (await hello(chat))["token"]
    answer = await chat.client.get("/chat/api/events", headers={"X-Chat-Token": token})
    assert (await answer.json()) == {"v": 1, "type": "batch", "events": []}


async def test_requests_without_a_genuine_token_or_from_elsewhere_are_refused(
        chat: ChatHub) -> None:
    refused = await post(chat, "messages", "v1.forged.0.sig", type="message", client_id="a",
                         body="x")
    assert refused.status == 400
    assert (await refused.json())["code"] == "bad_request"
    token = (await hello(chat))["token"]
    foreign = await chat.client.post("/chat/api/messages", headers={
        "X-Chat-Token": token, "Origin": "https://evil.example"},
        json={"v": 1, "type": "message", "client_id": "a", "body": "x"})
    assert foreign.status == 403
    own = await chat.client.post("/chat/api/messages", headers={
        "X-Chat-Token": token, "Origin": PUBLIC_URL},
        json={"v": 1, "type": "message", "client_id": "a", "body": "x"})
    assert own.status == 200
    huge = await chat.client.post("/chat/api/messages", headers={"X-Chat-Token": token},
                                  data=b'{"v": 1, "body": "' + b"x" * 70_000 + b'"}')
    assert huge.status == 413 and (await huge.json())["code"] == "too_long"
    assert len(await chat.messages()) == 1


def upload(token: str, data: bytes, filename: str, client_id: str,
           body: str | None = None) -> tuple[dict[str, str], aiohttp.FormData]:
    form = aiohttp.FormData()
    form.add_field("client_id", client_id)
    if body is not None:
        form.add_field("body", body)
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return {"X-Chat-Token": token}, form


async def test_attachments_are_checked_by_content_and_stored(chat: ChatHub) -> None:
    token = (await hello(chat))["token"]
    headers, form = upload(token, PNG, "photo.png", "file-1", "the pothole")
    answer = await chat.client.post("/chat/api/attachments", headers=headers, data=form)
    assert answer.status == 200, await answer.text()
    ack = await answer.json()
    (message,) = await chat.messages(Message.id == ack["id"])
    assert message.body == "the pothole"
    async with chat.hub.db.read() as session:
        from sqlalchemy import select

        (stored,) = await session.scalars(select(Attachment))
    assert (stored.content_type, stored.size, stored.message_id) == ("image/png", len(PNG),
                                                                    ack["id"])
    welcome = await hello(chat, token=token)
    (shown,) = welcome["messages"][0]["attachments"]
    assert shown["content_type"] == "image/png" and shown["size"] == len(PNG)
    got = await chat.client.get(shown["url"])
    assert got.status == 200 and await got.read() == PNG
    assert (await chat.client.get(shown["url"][:-3] + "abc")).status == 404
    headers, form = upload(token, PDF, "letter.pdf", "file-2")
    assert (await chat.client.post("/chat/api/attachments", headers=headers,
                                   data=form)).status == 200
    headers, form = upload(token, b"MZ\x90\x00 not a picture", "photo.png", "file-3")
    refused = await chat.client.post("/chat/api/attachments", headers=headers, data=form)
    assert refused.status == 400 and "PDF" in (await refused.json())["message"]
    assert len(await chat.messages()) == 2


class TestFileCap:
    @pytest.fixture
    def webchat_config(self) -> dict[str, object]:
        return {"max_file_bytes": 10_000}

    async def test_a_file_over_the_cap_is_refused_and_not_stored(self, chat: ChatHub) -> None:
        token = (await hello(chat))["token"]
        headers, form = upload(token, PNG * 20, "big.png", "big-1")
        refused = await chat.client.post("/chat/api/attachments", headers=headers, data=form)
        assert refused.status == 413
        frame = await refused.json()
        assert frame["code"] == "too_long" and frame["client_id"] == "big-1"
        assert await chat.messages() == []
