"""The chat's parts on their own: visitor tokens, frame parsing, rate and connection limits,
the message a frame becomes, the origin check."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import make_mocked_request

from hub.adapters.webchat.inbound import origin_allowed
from hub.adapters.webchat.limits import ConnectionLimit, MessageLimits
from hub.adapters.webchat.normalize import to_inbound
from hub.adapters.webchat.presence import VisitorPresence
from hub.adapters.webchat.protocol import (
    ChatMessage,
    Hello,
    Ping,
    Profile,
    ProtocolError,
    Seen,
    Typing,
    error_frame,
    parse,
)
from hub.adapters.webchat.visitors import (
    MAX_AGE,
    VISITOR_RE,
    make_token,
    new_visitor_id,
    verify_token,
)
from hub.config import Settings
from hub.identities import normalize_address

SECRET = b"k" * 32


def test_a_token_names_its_visitor_until_it_expires_or_is_forged() -> None:
    visitor = new_visitor_id()
    assert VISITOR_RE.match(visitor) and normalize_address("webchat", visitor) == visitor
    token = make_token(visitor, SECRET, now=1_000_000)
    assert verify_token(token, SECRET, now=1_000_000 + 3600) == visitor
    assert verify_token(token, SECRET, now=1_000_000 + MAX_AGE + 1) is None
    assert verify_token(token, b"another secret", now=1_000_000) is None
    other = new_visitor_id()
    assert verify_token(token.replace(visitor, other), SECRET, now=1_000_000) is None
    for junk in (None, "", 42, "v1..0.x", "x" * 500, token + "x"):
        assert verify_token(junk, SECRET, now=1_000_000) is None


def test_frames_parse_and_anything_else_is_bad_request() -> None:
    assert parse({"v": 1, "type": "hello", "after": 7, "language": "es", "x": 1}) == Hello(
        None, 7, "es")
    assert parse({"v": 1, "type": "hello", "token": 5}) == Hello()  # ignored, not refused
    assert parse({"v": 1, "type": "message", "client_id": "a-1", "body": "hi",
                  "profile": {"email": " a@b.org ", "leave_message": True}}) == ChatMessage(
        "a-1", "hi", Profile(email="a@b.org", leave_message=True))
    assert parse({"v": 1, "type": "typing", "on": False}) == Typing(False)
    assert parse({"v": 1, "type": "seen", "id": 3}) == Seen(3)
    assert parse({"v": 1, "type": "ping"}) == Ping()
    bad: object
    for bad in ([], {"type": "ping"}, {"v": 2, "type": "ping"}, {"v": 1, "type": "dance"},
                {"v": 1, "type": "message", "client_id": "x" * 65, "body": ""},
                {"v": 1, "type": "message", "client_id": "a b", "body": ""},
                {"v": 1, "type": "message", "client_id": "a", "body": 5},
                {"v": 1, "type": "message", "client_id": "a", "body": "", "profile": "x"},
                {"v": 1, "type": "typing", "on": "yes"}, {"v": 1, "type": "seen", "id": -1},
                {"v": 1, "type": "seen", "id": True}, {"v": 1, "type": "hello", "after": "1"}):
        with pytest.raises(ProtocolError) as refused:
            parse(bad)
        assert refused.value.code == "bad_request", bad


def test_error_frames_speak_the_visitors_language() -> None:
    error = ProtocolError("too_long", client_id="c", values={"max": 10})
    assert error_frame(error, "en") == {
        "v": 1, "type": "error", "code": "too_long", "client_id": "c",
        "message": "Your message is too long: please keep it under 10 characters."}
    assert "10 caracteres" in error_frame(error, "es")["message"]
    assert error_frame(ProtocolError("too_long"), "en")["message"]  # a value left out


def test_limits_per_visitor_per_address_and_connections() -> None:
    now = [0.0]
    limits = MessageLimits(2, 3, clock=lambda: now[0])
    assert limits.take("a", "ip") == 0 and limits.take("a", "ip") == 0
    assert limits.take("a", "ip") == 60  # the visitor's third in a minute
    assert limits.take("b", "ip") == 0
    assert limits.take("c", "ip") > 0  # the address's fourth
    now[0] = 61.0
    assert limits.take("a", "ip") == 0
    connections = ConnectionLimit(2)
    assert connections.acquire("ip") and connections.acquire("ip")
    assert not connections.acquire("ip") and connections.acquire("other")
    connections.release("ip")
    assert connections.acquire("ip")


def test_a_message_becomes_an_inbound_message_of_the_visitor() -> None:
    frame = ChatMessage("c-9", "Hello", Profile(name="Ana", email="ANA@example.org",
                                                phone="(415) 555-0123", consent=True))
    msg = to_inbound("vvisitor0000000000000", frame, language="es", phone_region="US")
    assert (msg.channel, msg.provider_id, msg.sender) == (
        "webchat", "vvisitor0000000000000:c-9", "vvisitor0000000000000")
    assert msg.sender_name == "Ana" and msg.language == "es" and msg.thread.continue_latest
    assert msg.extra_identities == (("email", "ana@example.org"), ("sms", "+14155550123"))
    assert msg.meta == {"client_id": "c-9", "consent": True}
    with pytest.raises(ProtocolError) as refused:
        to_inbound("vvisitor0000000000000", ChatMessage("c", "x", Profile(email="nope")),
                   language="en")
    assert refused.value.client_id == "c"


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://hub.city.example", True), ("https://www.city.example", True),
    ("https://WWW.city.example", True), ("https://evil.example", False),
    ("https://hub.city.example.evil.example", False), ("null", False), (None, False)])
def test_the_origin_must_be_the_hub_or_an_allowed_site(origin: str | None,
                                                        allowed: bool) -> None:
    settings = Settings.model_validate({
        "hub": {"public_url": "https://hub.city.example"},
        "webchat": {"allowed_origins": ["https://www.city.example/"]}})
    headers = {"Origin": origin} if origin is not None else {}
    request = make_mocked_request("GET", "/chat/ws", headers=headers)
    assert origin_allowed(request, settings) is allowed


def test_without_a_public_url_the_hubs_own_host_is_allowed() -> None:
    request = make_mocked_request("GET", "/chat/ws", headers={
        "Origin": "http://chat.local:9000", "Host": "chat.local:9000"})
    assert origin_allowed(request, Settings())
    configured = Settings.model_validate({"hub": {"public_url": "https://hub.city.example"}})
    assert not origin_allowed(request, configured)


def test_a_bad_allowed_origin_stops_the_start() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        Settings.model_validate({"webchat": {"allowed_origins": ["www.city.example"]}})


def test_the_channel_is_on_by_default_and_off_when_disabled() -> None:
    from hub.channels import configured_adapters

    on = [a.name for a in configured_adapters(Settings(), SECRET)]
    off = [a.name for a in configured_adapters(
        Settings.model_validate({"webchat": {"enabled": False}}), SECRET)]
    assert "webchat" in on and "webchat" not in off


async def test_presence_is_shared_through_redis_and_expires_after_away(redis_url: str) -> None:
    here, elsewhere = (VisitorPresence(1, redis_url, "bench-test") for _ in range(2))
    try:
        assert not await elsewhere.is_here("vvisitor")
        await here.arrive("vvisitor")
        assert await elsewhere.is_here("vvisitor")  # another process sees it
        await here.leave("vvisitor")
        assert await elsewhere.is_here("vvisitor")  # gone for less than away_after
        await asyncio.sleep(1.2)
        assert not await elsewhere.is_here("vvisitor") and not await here.is_here("vvisitor")
    finally:
        await here.close()
        await elsewhere.close()
