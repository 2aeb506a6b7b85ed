"""Reading updates (python-telegram-bot's types) into the hub's messages, and the verdicts on
the Bot API's refusals: no database, no network."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from hub.adapters.base import PermanentError, RecipientOptedOut, TransientError
from hub.adapters.telegram.inbound import TelegramSpoolParser, spool_items
from hub.adapters.telegram.media import FileFetcher, MediaUnavailable
from hub.adapters.telegram.normalize import WELCOME, parse_update
from hub.adapters.telegram.outbound import classify, split_text
from tests.support.corpus import CORPUS

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
USER = {"id": 42, "is_bot": False, "first_name": "Ada", "last_name": "L", "language_code": "es-ES"}
CHAT = {"id": 42, "first_name": "Ada", "type": "private"}


def update(**message: Any) -> bytes:
    body = {"message_id": 7, "from": USER, "chat": CHAT, "date": 1700000000} | message
    return json.dumps({"update_id": 1001, "message": body}).encode()


def corpus() -> dict[int, dict[str, Any]]:
    path = CORPUS / "opsdroid-telegram" / "json_response_example.derived.json"
    return {u["update_id"]: u for u in json.loads(path.read_text())}


def test_a_text_from_a_private_chat() -> None:
    msg = parse_update(update(text="Pothole on Main St"), NOW)
    assert (msg.channel, msg.sender, msg.provider_id, msg.thread_key) == (
        "telegram", "42", "42:7", "42:7")
    assert (msg.text, msg.sender_name, msg.language) == ("Pothole on Main St", "Ada L", "es")
    assert msg.thread.continue_latest and not msg.automatic and not msg.flags


def test_the_corpus_reply_names_the_message_it_answers() -> None:
    reply = parse_update(json.dumps(corpus()[639974084]).encode(), NOW)
    assert reply.thread.refs == ("639889348:1271",)


def test_a_location_and_a_venue_have_coordinates_and_a_map_link() -> None:
    msg = parse_update(update(location={"latitude": 40.416775, "longitude": -3.70379}), NOW)
    assert msg.meta["location"] == {"latitude": 40.416775, "longitude": -3.70379}
    assert msg.text.endswith("https://www.openstreetmap.org/?mlat=40.416775&mlon=-3.70379"
                             "#map=17/40.416775/-3.70379")
    venue = parse_update(update(venue={
        "location": {"latitude": 1.5, "longitude": 2.5}, "title": "Town hall",
        "address": "Plaza 1"}, location={"latitude": 1.5, "longitude": 2.5}), NOW)
    assert venue.meta["location"]["title"] == "Town hall" and "Plaza 1" in venue.text


def test_start_is_a_keyword_with_a_welcome_and_start_ref_asks_for_a_link() -> None:
    start = parse_update(update(text="/start"), NOW)
    assert start.meta["keyword"] == "start" and start.automatic
    assert start.meta["answer"] == WELCOME["es"]
    linked = parse_update(update(text="/start abcdefghjk"), NOW)
    assert linked.meta["link_reference"] == "ABCDEFGHJK"
    assert linked.thread.reference == "ABCDEFGHJK"
    assert "link_reference" not in parse_update(update(text="/start <script>"), NOW).meta


def test_an_unsupported_message_says_what_it_was() -> None:
    msg = parse_update(update(sticker={"file_id": "x", "file_unique_id": "y", "width": 1,
                                       "height": 1, "is_animated": False, "is_video": False,
                                       "type": "regular"}), NOW)
    assert msg.text == "[sticker]" and msg.meta["unsupported"] == "sticker"


@pytest.mark.parametrize("payload", [b"", b"not json", b"[]", b'{"update_id": "x"}',
                                     b'{"update_id": 5, "message": {"chat": 3}}',
                                     "\ud800".encode("utf-8", "surrogatepass")])
def test_a_bad_payload_is_kept_raw_and_flagged(payload: bytes) -> None:
    msg = parse_update(payload, NOW)
    assert "malformed" in msg.flags and msg.raw == payload and msg.automatic


def test_the_parser_travels_to_a_parse_process_and_media_failures_are_retried() -> None:
    parser = TelegramSpoolParser(FileFetcher("1:abc", "http://127.0.0.1:9", 1024))
    assert pickle.loads(pickle.dumps(parser)) == parser
    with pytest.raises(MediaUnavailable):
        parser.raw_only(b"{}", {"kind": "media"}, NOW, "parse_timeout")


def test_files_over_the_cap_are_named_on_the_text_and_not_fetched() -> None:
    body = update(document={"file_id": "big", "file_unique_id": "b", "file_name": "a.mp4",
                            "mime_type": "video/mp4", "file_size": 5000})
    msg = parse_update(body, NOW, max_file_bytes=1024)
    (dropped,) = msg.dropped_attachments
    assert (dropped.filename, dropped.size, dropped.reason) == ("a.mp4", 5000,
                                                                "attachment_too_large")
    assert [item.dedupe_key for item in spool_items(body, "webhook", 1024)] == ["update:1001"]
    assert [item.dedupe_key for item in spool_items(body, "webhook", 10_000)] == [
        "update:1001", "update:1001/media"]


def test_split_text_cuts_at_word_boundaries() -> None:
    assert split_text("short") == ["short"]
    parts = split_text(("ab " * 3000).strip())
    assert all(len(p) <= 4096 for p in parts) and " ".join(parts) == ("ab " * 3000).strip()
    assert split_text("x" * 5000) == ["x" * 4096, "x" * 904]


def test_the_bot_apis_refusals_map_to_the_retry_policy() -> None:
    wait = classify(RetryAfter(7))
    assert isinstance(wait, TransientError) and wait.retry_after == 7
    assert classify(RetryAfter(timedelta(seconds=3))).retry_after == 3
    assert isinstance(classify(Forbidden("Forbidden: bot was blocked by the user")),
                      RecipientOptedOut)
    chat = classify(BadRequest("Bad Request: chat not found"))
    assert isinstance(chat, PermanentError) and not isinstance(chat, RecipientOptedOut)
    assert isinstance(classify(TimedOut()), TransientError)
    assert isinstance(classify(NetworkError("Bad Gateway")), TransientError)
