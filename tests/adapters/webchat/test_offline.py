"""A visitor who left, or who left a message from the offline form, gets staff replies by email
(through the captured relay of tests/adapters/email) on SQLite and PostgreSQL; a visitor who is
here gets them in the chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import Message as EmailMessage

import pytest

from hub.storage.tables import Message
from tests.adapters.email.conftest import Relay, relay  # noqa: F401 (the captured relay)

from .conftest import ChatHub, chat_settings, running_chat, wait_until

CITIZEN = "ana@example.org"


@pytest.fixture
async def chat(settings_data: dict[str, dict[str, object]],
               relay: Relay) -> AsyncIterator[ChatHub]:  # noqa: F811
    settings_data["smtp"] = {"enabled": True, "host": "127.0.0.1", "port": 0}
    settings_data["email"] = {"acknowledge": False, "from": "City Hall <help@city.example>",
                              "relay_host": "127.0.0.1", "relay_port": relay.port,
                              "relay_timeout_seconds": 10}
    async with running_chat(chat_settings(settings_data, away_after_seconds=0)) as running:
        yield running


def mails(relay: Relay) -> list[tuple[list[str], EmailMessage]]:  # noqa: F811
    return [(list(envelope.rcpt_tos), message_from_bytes(
        envelope.content if isinstance(envelope.content, bytes) else b""))
        for envelope in relay.handler.received]


async def test_a_left_message_gets_its_reply_by_email(chat: ChatHub,
                                                      relay: Relay) -> None:  # noqa: F811
    visitor = await chat.visitor()
    ack = await visitor.say("My bin was not collected", profile={
        "name": "Ana", "email": "Ana@Example.org", "leave_message": True, "consent": True})
    assert ack["type"] == "ack"
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    assert ("email", CITIZEN) in await chat.identities(conversation.contact_id)
    # Still connected: a left message is answered by email all the same.
    answer = await chat.reply(conversation.id, "We will collect it on Monday.")
    assert answer.status == 202, await answer.text()
    await chat.hub.jobs.drain()
    await wait_until(lambda: _received(relay))
    ((recipients, mail),) = mails(relay)
    assert recipients == [CITIZEN]
    assert "We will collect it on Monday." in mail.as_string()
    (reply,) = await chat.messages(Message.direction == "outbound")
    assert reply.channel == "email" and reply.recipient == CITIZEN
    assert reply.conversation_id == conversation.id  # the same conversation goes on there


async def test_a_visitor_who_left_gets_the_reply_by_email(chat: ChatHub,
                                                          relay: Relay) -> None:  # noqa: F811
    visitor = await chat.visitor()
    ack = await visitor.say("Noise on Elm St", profile={"email": CITIZEN})
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    assert (await chat.reply(conversation.id, "here: by chat")).status == 202
    assert (await visitor.next("message"))["body"] == "here: by chat"
    await visitor.close()
    await wait_until(lambda: _gone(chat, visitor.welcome["visitor"]))
    named = await chat.client.post(  # as the workspace's form does: the channel named
        f"/api/v1/conversations/{conversation.id}/replies",
        json={"body": "gone: by email", "channel": "webchat"}, headers=chat.headers)
    assert named.status == 202
    await chat.hub.jobs.drain()
    await wait_until(lambda: _received(relay))
    channels = [(m.channel, m.body) for m in await chat.messages(Message.direction == "outbound")]
    assert channels == [("webchat", "here: by chat"), ("email", "gone: by email")]
    back = await chat.visitor(token=visitor.token)  # the chat shows both when they return
    assert [m["body"] for m in back.welcome["messages"]][-2:] == ["here: by chat",
                                                                   "gone: by email"]


async def test_a_visitor_who_gave_no_address_keeps_replies_in_the_chat(chat: ChatHub) -> None:
    visitor = await chat.visitor()
    ack = await visitor.say("anonymous question")
    conversation = await chat.conversation_of(ack["conversation"]["reference"])
    await visitor.close()
    await wait_until(lambda: _gone(chat, visitor.welcome["visitor"]))
    assert (await chat.reply(conversation.id, "kept for your return")).status == 202
    await chat.hub.jobs.drain()
    (reply,) = await chat.messages(Message.direction == "outbound")
    assert reply.channel == "webchat"
    back = await chat.visitor(token=visitor.token, after=ack["id"])
    assert [m["body"] for m in back.welcome["messages"]] == ["kept for your return"]


async def _received(relay: Relay) -> bool:  # noqa: F811
    return bool(relay.handler.received)


async def _gone(chat: ChatHub, visitor: str) -> bool:
    return not await chat.adapter.presence.is_here(visitor)
