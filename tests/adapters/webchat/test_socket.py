"""The chat protocol over a real WebSocket, on SQLite and PostgreSQL: hello/welcome, acks after
commit with the stored id, resends stored once, staff replies pushed live, resume with `after`,
visitors kept apart, the origin check, limits with error frames, typing and joined."""

from __future__ import annotations

import asyncio
from datetime import datetime

import aiohttp
import pytest

from hub.events import Event
from hub.model import Direction
from hub.storage.tables import Message

from .conftest import CITY_SITE, STAFF_NAME, ChatHub, client_id, wait_until


async def test_hello_without_a_token_is_a_fresh_visitor(chat: ChatHub) -> None:
    visitor = await chat.visitor(language="es")
    welcome = visitor.welcome
    assert welcome["v"] == 1 and welcome["type"] == "welcome"
    assert welcome["visitor"].startswith("v") and welcome["token"]
    assert welcome["conversation"] is None and welcome["messages"] == []
    assert welcome["online"] is False  # nobody has a workspace open
    assert welcome["open"] is True  # no calendar: always open
    assert welcome["limits"] == {"max_body": 2000, "per_minute": 20, "max_file_bytes": 5_000_000}
    await visitor.send(type="ping")
    assert (await visitor.next("pong")) == {"v": 1, "type": "pong"}


async def test_a_message_is_acked_after_commit_with_its_stored_id(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    ack = await visitor.say("The streetlight on Elm St is out", cid="cid-1",
                            profile={"name": "Ana", "consent": True})
    assert ack["type"] == "ack" and ack["client_id"] == "cid-1"
    stored = await chat.messages(Message.id == ack["id"])  # committed before the ack
    assert len(stored) == 1
    message = stored[0]
    assert message.body == "The streetlight on Elm St is out"
    assert message.provider_id == f"{visitor.welcome['visitor']}:cid-1"
    assert message.sender == visitor.welcome["visitor"] and message.channel == "webchat"
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    assert conversation.channel == "webchat" and ack["conversation"]["status"] == "open"
    assert datetime.fromisoformat(ack["created_at"]).tzinfo is not None


async def test_a_resend_after_a_reconnect_is_stored_once_with_the_same_ack(chat: ChatHub) -> None:
    first = await chat.visitor()
    ack = await first.say("Pothole at 5th and Main", cid="same-id")
    await first.close()
    again = await chat.visitor(token=first.token)
    assert again.welcome["visitor"] == first.welcome["visitor"]
    resent = await again.say("Pothole at 5th and Main", cid="same-id")
    assert resent == ack
    assert len(await chat.messages(Message.direction == "inbound")) == 1
    # Twenty copies at once (a flapping network) are still one message and one id.
    acks = await asyncio.gather(*(again.say("x", cid="burst") for _ in range(1)))
    copies = await asyncio.gather(*(chat.visitor(token=first.token) for _ in range(5)))
    acks += await asyncio.gather(*(v.say("x", cid="burst") for v in copies))
    assert len({a["id"] for a in acks}) == 1
    assert len(await chat.messages(Message.direction == "inbound")) == 2


async def test_a_staff_reply_is_pushed_live_and_seen_makes_it_delivered(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    ack = await visitor.say("Is the library open on Sunday?")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    answer = await chat.reply(conversation.id, "Yes, from 10 to 4.")
    assert answer.status == 202, await answer.text()
    pushed = await visitor.next("message")
    assert pushed["direction"] == "outbound" and pushed["body"] == "Yes, from 10 to 4."
    assert pushed["author"] == STAFF_NAME and pushed["attachments"] == []
    assert pushed["id"] == (await answer.json())["message_id"]
    await visitor.send(type="seen", id=pushed["id"])

    async def delivered() -> bool:
        (reply,) = await chat.messages(Message.id == pushed["id"])
        return reply.delivery_status == "delivered"

    await wait_until(delivered)


async def test_resume_brings_what_came_after_in_order_without_notes(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    first = await visitor.say("first")
    second = await visitor.say("second")
    conversation = await chat.conversation_of(first["conversation"]["reference"])
    await visitor.close()  # the network drops; staff answer meanwhile
    assert (await chat.api("POST", f"/api/v1/conversations/{conversation.id}/notes",
                           json={"body": "internal: check the rota"})).status < 300
    assert (await chat.reply(conversation.id, "reply while away")).status == 202
    await chat.hub.jobs.drain()
    back = await chat.visitor(token=visitor.token, after=first["id"])
    bodies = [(m["direction"], m["body"]) for m in back.welcome["messages"]]
    assert bodies == [("inbound", "second"), ("outbound", "reply while away")]
    assert back.welcome["messages"][0]["client_id"] == second["client_id"]
    assert back.welcome["conversation"] == first["conversation"]
    everything = await chat.visitor(token=visitor.token)  # a new tab: the whole history
    assert [m["body"] for m in everything.welcome["messages"]] == [
        "first", "second", "reply while away"]


async def test_another_visitor_sees_nothing_of_the_first(chat: ChatHub) -> None:
    first = await chat.visitor()
    ack = await first.say("my address is 12 Oak Lane")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    other = await chat.visitor()  # another browser: no token
    assert other.welcome["visitor"] != first.welcome["visitor"]
    assert other.welcome["conversation"] is None and other.welcome["messages"] == []
    forged = first.token[:-4] + ("AAAA" if not first.token.endswith("AAAA") else "BBBB")
    stranger = await chat.visitor(token=forged)
    assert stranger.welcome["visitor"] != first.welcome["visitor"]
    assert stranger.welcome["messages"] == []
    assert (await chat.reply(conversation.id, "for the first only")).status == 202
    assert (await first.next("message"))["body"] == "for the first only"
    await other.send(type="ping")
    await other.next("pong")
    await asyncio.sleep(0.3)
    await stranger.send(type="ping")
    await stranger.next("pong")
    assert not [f for f in other.pushed + stranger.pushed if f["type"] == "message"]


@pytest.mark.parametrize("origin", ["https://evil.example", None, "null"])
async def test_a_foreign_origin_is_refused_before_the_upgrade(chat: ChatHub,
                                                                origin: str | None) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await chat.connect(origin=origin)
    assert refused.value.status == 403
    metrics = await (await chat.client.get("/metrics")).text()
    assert 'hub_webchat_refused_total{code="origin"}' in metrics


async def test_the_allowed_site_may_open_the_chat(chat: ChatHub) -> None:
    socket = await chat.connect(origin=CITY_SITE)
    await socket.send_json({"v": 1, "type": "hello"})
    assert (await socket.receive_json(timeout=10))["type"] == "welcome"
    metrics = await (await chat.client.get("/metrics")).text()
    assert "hub_webchat_connections 1.0" in metrics
    await socket.close()


async def test_bad_frames_get_bad_request_and_the_socket_stays(chat: ChatHub) -> None:
    socket = await chat.connect()
    await socket.send_json({"v": 1, "type": "message", "client_id": "a", "body": "x"})
    early = await socket.receive_json(timeout=10)  # before hello
    assert early["code"] == "bad_request" and early["client_id"] == "a"
    for bad in ("not json", '{"v": 2, "type": "hello"}', '{"v": 1, "type": "dance"}',
                '{"v": 1, "type": "message", "client_id": "", "body": "x"}'):
        await socket.send_str(bad)
        frame = await socket.receive_json(timeout=10)
        assert frame["type"] == "error" and frame["code"] == "bad_request", bad
        assert frame["message"]
    await socket.send_json({"v": 1, "type": "hello", "token": "x" * 5000, "extra": 1})
    assert (await socket.receive_json(timeout=10))["type"] == "welcome"
    await socket.close()


class TestLimits:
    @pytest.fixture
    def webchat_config(self) -> dict[str, object]:
        return {"per_minute": 2, "per_ip_per_minute": 3, "max_body": 50,
                "max_connections_per_ip": 3}

    async def test_too_many_messages_get_rate_limited_and_are_not_stored(
            self, chat: ChatHub) -> None:
        visitor = await chat.visitor(language="es")
        assert (await visitor.say("one"))["type"] == "ack"
        assert (await visitor.say("two"))["type"] == "ack"
        refused = await visitor.say("three", cid="third")
        assert refused["code"] == "rate_limited" and refused["client_id"] == "third"
        assert 1 <= refused["retry_after"] <= 60
        assert "segundos" in refused["message"]  # in the visitor's language
        assert len(await chat.messages(Message.direction == "inbound")) == 2

    async def test_an_address_is_limited_across_its_visitors(self, chat: ChatHub) -> None:
        one, two = await chat.visitor(), await chat.visitor()
        assert [(await v.say("hi"))["type"] for v in (one, one, two)] == ["ack"] * 3
        refused = await two.say("and again")
        assert refused["code"] == "rate_limited" and refused["retry_after"] >= 1

    async def test_a_long_message_is_refused_with_too_long(self, chat: ChatHub) -> None:
        visitor = await chat.visitor()
        refused = await visitor.say("x" * 51)
        assert refused["code"] == "too_long" and "50" in refused["message"]
        assert await chat.messages() == []

    async def test_connections_per_address_are_capped(self, chat: ChatHub) -> None:
        sockets = [await chat.connect() for _ in range(3)]
        extra = await chat.connect()
        refused = await extra.receive_json(timeout=10)
        assert refused["code"] == "too_many_connections"
        assert (await extra.receive(timeout=10)).type in (aiohttp.WSMsgType.CLOSE,
                                                          aiohttp.WSMsgType.CLOSED)
        await sockets[0].close()
        await asyncio.sleep(0.2)
        again = await chat.connect()
        await again.send_json({"v": 1, "type": "hello"})
        assert (await again.receive_json(timeout=10))["type"] == "welcome"
        for socket in (*sockets[1:], again):
            await socket.close()


async def test_staff_typing_and_an_agent_joining_reach_the_widget(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    ack = await visitor.say("hello?")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    chat.hub.events.publish(Event("staff.typing", conversation.id, conversation.queue,
                                  {"staff_id": 1, "name": STAFF_NAME, "on": True,
                                   "reply": True}))
    typing = await visitor.next("typing")
    assert typing == {"v": 1, "type": "typing", "on": True, "author": STAFF_NAME}
    assert (await chat.api("POST", f"/api/v1/conversations/{conversation.id}/claim")).status \
        == 200
    assert (await visitor.next("joined"))["author"] == STAFF_NAME


async def test_citizen_typing_reaches_the_workspace(chat: ChatHub) -> None:
    events = await chat.client.ws_connect("/api/v1/events", headers=chat.headers)
    assert (await events.receive_json(timeout=10))["kind"] == "ready"
    visitor = await chat.visitor()
    ack = await visitor.say("hi")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    await visitor.send(type="typing", on=True)
    kinds = []
    async with asyncio.timeout(10):
        while (event := await events.receive_json())["kind"] != "citizen.typing":
            kinds.append(event["kind"])
    assert event["conversation_id"] == conversation.id and event["on"] is True
    assert "message.inbound" in kinds
    assert not [k for k in kinds if k.startswith("webchat.")]  # between processes only
    await events.close()


async def test_a_message_from_another_tab_shows_in_this_one(chat: ChatHub) -> None:
    one = await chat.visitor()
    two = await chat.visitor(token=one.token)
    ack = await one.say("from tab one", cid="tab-1")
    echoed = await two.next("message")
    assert echoed["id"] == ack["id"] and echoed["client_id"] == "tab-1"
    assert echoed["direction"] == Direction.INBOUND.value
    await one.send(type="ping")
    await one.next("pong")
    assert not [f for f in one.pushed if f["type"] == "message"]  # never back to the sender
    assert client_id()  # ids stay unique across tests


async def test_a_failure_behind_is_an_unavailable_error_and_a_resend_works(
        chat: ChatHub, monkeypatch: pytest.MonkeyPatch) -> None:
    visitor = await chat.visitor(language="es")
    real_accept = chat.hub.intake.accept

    async def broken(msg: object) -> object:
        raise RuntimeError("database gone")

    monkeypatch.setattr(chat.hub.intake, "accept", broken)
    refused = await visitor.say("are you there?", cid="retry-me")
    assert refused["code"] == "unavailable" and refused["client_id"] == "retry-me"
    assert "no se envió" in refused["message"]
    monkeypatch.setattr(chat.hub.intake, "accept", real_accept)
    ack = await visitor.say("are you there?", cid="retry-me")  # the same socket, again
    assert ack["type"] == "ack"
    assert len(await chat.messages()) == 1


async def test_after_staff_closed_the_conversation_the_next_message_starts_a_new_one(
        chat: ChatHub) -> None:
    visitor = await chat.visitor()
    first = await visitor.say("first request")
    conversation = await chat.conversation_of(first["conversation"]["reference"])
    closed = await chat.api("POST", f"/api/v1/conversations/{conversation.id}/status",
                            json={"status": "closed"})
    assert closed.status == 200
    status = await visitor.next("status")
    assert status["conversation"]["status"] == "closed"
    second = await visitor.say("another matter")
    assert second["type"] == "ack" and second["conversation"]["status"] == "open"
    assert second["conversation"]["reference"] != first["conversation"]["reference"]
    back = await chat.visitor(token=visitor.token)
    assert back.welcome["conversation"] == second["conversation"]
    assert [m["body"] for m in back.welcome["messages"]] == ["another matter"]
