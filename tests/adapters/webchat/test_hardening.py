"""The chat as a hostile client sees it, on SQLite and PostgreSQL: forged tokens and file links
with characters a signature never has, a flood of frames on the socket, multipart bodies of
many parts, the headers of a stored file, a colleague's internal note never announced to the
visitor as "typing", and origins that could smuggle a directive into the page's CSP."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from hub.adapters.webchat import inbound
from hub.adapters.webchat.visitors import make_token, new_visitor_id, verify_token
from hub.config import Settings
from hub.storage.tables import Message

from .conftest import ChatHub, client_id
from .test_fallback import PNG, hello, post


def forged(secret: bytes) -> str:
    """A well-formed token whose signature has a character no signature has."""
    payload, _, _ = make_token(new_visitor_id(), secret).rpartition(".")
    return f"{payload}.é{'A' * 31}"


async def test_a_token_with_a_foreign_character_is_a_fresh_visitor(chat: ChatHub) -> None:
    secret = chat.hub.reply_secret
    assert verify_token(forged(secret), secret) is None
    visitor = await chat.visitor(token=forged(secret))
    assert visitor.welcome["type"] == "welcome" and visitor.welcome["messages"] == []
    refused = await post(chat, "messages", forged(secret), type="message", client_id="x-1",
                         body="hi")
    assert refused.status == 400 and (await refused.json())["code"] == "bad_request"


async def test_a_file_link_with_a_foreign_character_is_not_found(chat: ChatHub) -> None:
    answer = await chat.client.get("/chat/api/files/1/%C3%A9abc")
    assert answer.status == 404


class TestFrameFlood:
    @pytest.fixture(autouse=True)
    def small_budget(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(inbound, "FRAMES_PER_SECOND", 0.01)  # no refill within the test
        monkeypatch.setattr(inbound, "FRAME_BURST", 5)
        monkeypatch.setattr(inbound, "MAX_OVERRUN", 20)

    async def test_messages_past_the_budget_are_refused_clearly_and_not_stored(
            self, chat: ChatHub) -> None:
        visitor = await chat.visitor()  # the hello is the first frame of five
        sent = [client_id() for _ in range(8)]
        for cid in sent:
            await visitor.send(type="message", client_id=cid, body="flood")
        answers = {}
        for _ in sent:
            frame = await visitor.next("ack", "error")
            answers[frame["client_id"]] = frame
        assert [answers[c]["type"] for c in sent] == ["ack"] * 4 + ["error"] * 4
        refused = answers[sent[-1]]
        assert refused["code"] == "rate_limited" and refused["retry_after"] == 1
        assert len(await chat.messages(Message.direction == "inbound")) == 4

    async def test_hints_past_the_budget_are_dropped_and_a_flood_is_closed(
            self, chat: ChatHub) -> None:
        visitor = await chat.visitor()
        for _ in range(4):
            await visitor.send(type="ping")
        for _ in range(4):
            assert (await visitor.next("pong"))["type"] == "pong"
        for _ in range(25):
            await visitor.send(type="typing", on=True)
        closing = await visitor.socket.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert visitor.socket.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert [f for f in visitor.pushed if f["type"] == "error"] == []  # hints: no answer


def parts(token: str, *fields: tuple[str, Any]) -> tuple[dict[str, str], aiohttp.FormData]:
    form = aiohttp.FormData()
    for name, value in fields:
        if isinstance(value, bytes):
            form.add_field(name, value, filename="photo.png",
                           content_type="application/octet-stream")
        else:
            form.add_field(name, value)
    return {"X-Chat-Token": token}, form


async def test_a_body_of_many_parts_or_two_files_is_refused(chat: ChatHub) -> None:
    token = (await hello(chat))["token"]
    headers, form = parts(token, ("client_id", "many-1"),
                          *[(f"filler{i}", "x" * 100) for i in range(8)], ("file", PNG))
    refused = await chat.client.post("/chat/api/attachments", headers=headers, data=form)
    assert refused.status == 400
    headers, form = parts(token, ("client_id", "two-1"), ("file", PNG),
                          ("file", PNG + b"\x00" * 70_000))
    refused = await chat.client.post("/chat/api/attachments", headers=headers, data=form)
    assert refused.status == 413
    assert await chat.messages() == []


async def test_an_upload_without_a_genuine_token_is_refused(chat: ChatHub) -> None:
    headers, form = parts(forged(chat.hub.reply_secret), ("client_id", "f-1"), ("file", PNG))
    refused = await chat.client.post("/chat/api/attachments", headers=headers, data=form)
    assert refused.status == 400
    assert await chat.messages() == []


async def test_a_stored_file_is_sandboxed_and_never_sniffed(chat: ChatHub) -> None:
    token = (await hello(chat))["token"]
    headers, form = parts(token, ("client_id", "img-1"), ("file", PNG))
    assert (await chat.client.post("/chat/api/attachments", headers=headers,
                                   data=form)).status == 200
    (shown,) = (await hello(chat, token=token))["messages"][0]["attachments"]
    got = await chat.client.get(shown["url"])
    assert got.status == 200 and got.headers["Content-Type"] == "image/png"
    policy = got.headers["Content-Security-Policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy
    assert "frame-ancestors 'self' https://www.city.example" in policy
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith("inline; filename=\"attachment-")


async def test_a_colleague_writing_a_note_is_not_typing_to_the_visitor(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    ack = await visitor.say("is anyone there?")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    staff = await chat.client.ws_connect("/api/v1/events", headers=chat.headers)
    assert (await staff.receive_json(timeout=10))["kind"] == "ready"

    async def say(**frame: Any) -> None:
        await staff.send_json({"conversation_id": conversation.id, **frame})
        async with asyncio.timeout(10):  # the staff's own socket hears it: it was published
            while (await staff.receive_json())["kind"] != "staff.typing":
                pass

    await say(kind="typing", on=True)  # the note box: no `reply`
    await say(kind="typing", on=True, reply=False)
    await say(kind="typing", on=False)
    assert (await visitor.next("typing")) == {"v": 1, "type": "typing", "on": False,
                                              "author": "Pat Clerk"}
    await say(kind="typing", on=True, reply=True)  # the reply to the citizen
    assert (await visitor.next("typing"))["on"] is True
    await staff.close()


@pytest.mark.parametrize("origin", ["https://a.example;script-src *", "https://a.example x",
                                    "https://a.example?x=1", "javascript://a.example"])
def test_an_allowed_origin_is_a_bare_origin(settings_data: dict[str, dict[str, object]],
                                            origin: str) -> None:
    settings_data["webchat"] = {"allowed_origins": [origin]}
    with pytest.raises(ValidationError):
        Settings.model_validate(settings_data)
    settings_data["webchat"] = {"allowed_origins": ["https://WWW.City.example:8443/",
                                                    "http://[::1]:8080"]}
    assert Settings.model_validate(settings_data).webchat.allowed_origins == (
        "https://www.city.example:8443", "http://[::1]:8080")


async def test_the_frame_posts_only_to_an_allowed_embedding_site(chat: ChatHub) -> None:
    allowed = await (await chat.client.get(
        "/chat?embed=1&host=https%3A%2F%2Fwww.city.example")).text()
    assert 'data-parent="https://www.city.example"' in allowed
    for host in ("https%3A%2F%2Fevil.example", "*", ""):
        page = await (await chat.client.get(f"/chat?embed=1&host={host}")).text()
        assert 'data-parent=""' in page, host
    full = await (await chat.client.get("/chat?host=https%3A%2F%2Fwww.city.example")).text()
    assert 'data-parent=""' in full  # the full page has no parent to tell


async def test_fallback_requests_of_one_address_are_limited(
        chat: ChatHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.adapters.webchat import session

    monkeypatch.setattr(session, "REQUESTS_PER_MINUTE", 3)
    token = (await hello(chat))["token"]
    for _ in range(2):
        assert (await post(chat, "typing", token, type="typing", on=True)).status == 200
    refused = await post(chat, "hello", type="hello")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    frame = await refused.json()
    assert frame["code"] == "rate_limited" and frame["retry_after"] >= 1
