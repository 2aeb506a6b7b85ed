"""The SMS channel's pure parts: Twilio's signature vectors (the shared corpus) through the
webhook's own check, form fields into an InboundMessage (E.164, MessageSid, reference hints,
media, poison kept and flagged), segment counts, text flattening and Twilio's errors."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from aiohttp.test_utils import make_mocked_request
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from hub.adapters.base import DeliveryError, PermanentError, TransientError
from hub.adapters.sms.inbound import SmsSpoolParser
from hub.adapters.sms.media import MediaFetcher, MediaUnavailable
from hub.adapters.sms.normalize import e164, keyword_of, parse_sms
from hub.adapters.sms.outbound import TwilioSender, classify
from hub.adapters.sms.signature import verified_form
from hub.adapters.sms.status import report_of
from hub.adapters.sms.text import segments, sms_text
from hub.config import Settings
from hub.model import OutboundMessage
from tests.support.corpus import CORPUS

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
SID = "SM" + "0123456789abcdef" * 2
VECTORS = CORPUS / "twilio-python-request-validator" / "request_validator_vectors.derived.json"


def _vectors() -> list[dict[str, Any]]:
    data = json.loads(VECTORS.read_text())
    return [v for v in data["vectors"] if "params" in v or "params_multi" in v]


def _check(vector: dict[str, Any], public_url: str, signature: str) -> bool:
    pairs = [tuple(p) for p in vector.get("params_multi") or vector["params"].items()]
    parts = urlsplit(vector["url"])
    request = make_mocked_request("POST", f"{parts.path}?{parts.query}",
                                  headers={"X-Twilio-Signature": signature})
    body = urlencode(pairs).encode()
    return verified_form(RequestValidator("12345"), public_url, request, body) is not None


# The public URL configured for each vector: where the vector says the signature validates.
PUBLIC = {
    "form_params_basic": "https://mycompany.com",
    "url_with_port_443_signature": "https://mycompany.com",  # Twilio signed with :443
    "http_url_with_port_80_signature": "http://mycompany.com",  # Twilio signed with :80
    "http_url_with_port_1234": "http://mycompany.com:1234",
    "https_url_with_port_1234_validates_with_portless_signature": "https://mycompany.com:1234",
    "duplicate_keys_and_values": "https://mycompany.com",
}


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_twilio_signature_vectors_pass_the_webhook_check(vector: dict[str, Any]) -> None:
    signature = vector["expected_signature"]
    assert _check(vector, PUBLIC[vector["name"]], signature)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert not _check(vector, PUBLIC[vector["name"]], flipped)
    assert not _check(vector, "https://elsewhere.example", signature)
    assert not _check(vector, PUBLIC[vector["name"]], "")


def test_every_form_vector_of_the_corpus_is_checked() -> None:
    assert {v["name"] for v in _vectors()} == set(PUBLIC)


def form(**fields: str) -> bytes:
    base = {"MessageSid": SID, "SmsSid": SID, "AccountSid": "AC" + "1" * 32,
            "From": "+14155550123", "To": "+15005550006", "Body": "Pothole on 5th", "NumMedia": "0"}
    return urlencode({**base, **fields}).encode()


def test_a_text_becomes_a_message_with_e164_numbers_and_the_sid() -> None:
    msg = parse_sms(form(From="+44 20 7946 0958"), NOW)
    assert (msg.channel, msg.provider_id, msg.sender, msg.recipient) == (
        "sms", SID, "+442079460958", "+15005550006")
    assert msg.text == "Pothole on 5th" and not msg.flags and msg.received_at == NOW
    assert msg.thread.continue_latest and msg.thread.reference is None


@pytest.mark.parametrize(("text", "reference"), [
    ("About #ABCDEFGH23: still broken", "ABCDEFGH23"),
    ("about #abcdefgh23 again", "ABCDEFGH23"),
    ("Re ABCDEFGH23 please", "ABCDEFGH23"),
    ("no code in here at all", None),
    ("#ABCDEFGH2 is too short", None),
])
def test_a_reference_in_the_text_is_a_thread_hint(text: str, reference: str | None) -> None:
    assert parse_sms(form(Body=text), NOW).thread.reference == reference


def test_mms_media_urls_are_kept_in_meta() -> None:
    msg = parse_sms(form(NumMedia="2", MediaUrl0="https://api.twilio.com/m/1",
                         MediaContentType0="image/jpeg", MediaUrl1="https://api.twilio.com/m/2",
                         MediaContentType1="image/png"), NOW)
    assert msg.meta["media"] == [
        {"url": "https://api.twilio.com/m/1", "content_type": "image/jpeg"},
        {"url": "https://api.twilio.com/m/2", "content_type": "image/png"}]


@pytest.mark.parametrize("payload", [
    form(From="not a phone", MessageSid="garbage", NumMedia="lots", Body="\x00" * 10),
    form(From="", To="", MessageSid=""),
    b"\xff\xfe not a form at all",
    b"",
    b"%%%&&&===",
    form(Body="x" * 100_000),
])
def test_poison_never_raises_and_is_flagged(payload: bytes) -> None:
    parser = SmsSpoolParser()
    msg = parser(payload, {}, NOW)
    assert msg.channel == "sms" and msg.provider_id
    if msg.sender == "unknown":
        assert "malformed" in msg.flags and not msg.thread.continue_latest
    raw = parser.raw_only(payload, {}, NOW, "parse_timeout")
    assert raw.flags == ("malformed", "parse_timeout") and raw.raw == payload


def test_the_parser_travels_to_a_parse_process() -> None:
    parser = pickle.loads(pickle.dumps(SmsSpoolParser()))
    assert parser(form(), {}, NOW).provider_id == SID


@pytest.mark.parametrize(("number", "normal"), [
    ("+14155550123", "+14155550123"), (" +1 (415) 555-0123 ", "+14155550123"),
    ("whatsapp:+4915123456789", "+4915123456789")])
def test_numbers_are_e164(number: str, normal: str) -> None:
    assert e164(number) == normal


@pytest.mark.parametrize("number", ["4155550123", "+1", "CITYHALL", "", "+1415555012345678"])
def test_what_is_not_an_international_number_is_refused(number: str) -> None:
    with pytest.raises(ValueError):
        e164(number)


@pytest.mark.parametrize(("text", "count", "encoding"), [
    ("a" * 160, 1, "GSM-7"), ("a" * 161, 2, "GSM-7"), ("a" * 306, 2, "GSM-7"),
    ("a" * 307, 3, "GSM-7"), ("€" * 80, 1, "GSM-7"), ("€" * 81, 2, "GSM-7"),
    ("ñandú" * 10, 1, "UCS-2"), ("ú" * 70, 1, "UCS-2"), ("ú" * 71, 2, "UCS-2"),
    ("🙂" * 35, 1, "UCS-2"), ("🙂" * 36, 2, "UCS-2"), ("Привет" * 12, 2, "UCS-2"),
])
def test_segments_count_gsm7_and_ucs2(text: str, count: int, encoding: str) -> None:
    got = segments(text)
    assert (got.count, got.encoding) == (count, encoding)


def test_staff_html_and_markdown_are_flattened() -> None:
    assert sms_text("", "<p>Hello <b>Ana</b></p><p>It is fixed &amp; done.</p>") == (
        "Hello Ana\nIt is fixed & done.")
    assert sms_text("**Done** today.\r\n\r\n\r\n\r\nThanks") == "Done today.\n\nThanks"


def _rest_error(status: int, code: int | None) -> TwilioRestException:
    return TwilioRestException(status, "/Messages.json", "Unable to create record", code, "POST")


@pytest.mark.parametrize(("status", "code", "kind"), [
    (400, 21211, PermanentError), (400, 21610, PermanentError), (400, 21614, PermanentError),
    (400, 30007, PermanentError), (401, 20003, PermanentError), (429, 20429, TransientError),
    (500, 20500, TransientError), (503, None, TransientError)])
def test_twilio_errors_are_transient_or_permanent_with_the_code(
        status: int, code: int | None, kind: type[DeliveryError]) -> None:
    error = classify(_rest_error(status, code))
    assert isinstance(error, kind) and error.code == str(code or status)
    if code:
        assert str(code) in str(error)


def test_status_callbacks_map_onto_delivery_statuses() -> None:
    report = report_of({"MessageSid": SID, "MessageStatus": "undelivered", "ErrorCode": "30007",
                        "To": "+14155550123"})
    assert report is not None
    assert (report.status, report.refers_to, report.detail) == (
        "undelivered", (SID,), "Twilio error 30007")
    queued = report_of({"MessageSid": SID, "MessageStatus": "queued"})
    assert queued is not None and queued.status == "queued"
    assert report_of({"MessageStatus": "sent"}) is None


def test_credentials_go_only_to_the_accounts_own_media_urls() -> None:
    fetcher = MediaFetcher("AC" + "1" * 32, "token", "")
    fetched = fetcher.fetch_all([
        {"url": "https://evil.example/2010-04-01/Accounts/AC111/Messages/MM1/Media/ME1"},
        {"url": "https://api.twilio.com/2010-04-01/Accounts/ACother/Messages/MM1/Media/ME1"}])
    assert fetched.attachments == () and len(fetched.skipped) == 2


def test_a_media_item_that_cannot_be_parsed_is_tried_again_not_kept_raw() -> None:
    with pytest.raises(MediaUnavailable):
        SmsSpoolParser().raw_only(form(), {"kind": "media"}, NOW, "parse_timeout")


@pytest.mark.parametrize(("text", "keyword"), [
    ("STOP", "stop"), (" stop ", "stop"), ("Stop.", "stop"), ("STOPALL", "stop"),
    ("unsubscribe", "stop"), ("Cancel", "stop"), ("END", "stop"), ("quit", "stop"),
    ("START", "start"), ("unstop", "start"), ("HELP", "help"), ("info", "help"),
    ("stop the noise please", None), ("Don't stop", None), ("", None), ("HELP ME", None),
])
def test_carrier_keywords_are_the_whole_text(text: str, keyword: str | None) -> None:
    assert keyword_of(text) == keyword
    msg = parse_sms(form(Body=text), NOW)
    assert msg.meta.get("keyword") == keyword
    assert msg.automatic is (keyword is not None)  # never answered automatically
    assert (f"keyword_{keyword}" in msg.flags) is (keyword is not None)


def test_a_text_over_max_segments_is_not_sent() -> None:
    settings = Settings.model_validate({"twilio": {
        "account_sid": "AC" + "1" * 32, "auth_token": "t", "from_number": "+15005550006",
        "api_base_url": "http://127.0.0.1:9"}, "sms": {"max_segments": 2}})
    sender = TwilioSender(settings, "https://hub.city.example")
    msg = OutboundMessage(message_id=1, conversation_id=1, channel="sms", to="+14155550123",
                          body="a" * 307, idempotency_key="k", reference="ABCDEFGH23")
    with pytest.raises(PermanentError) as refused:
        sender.send(msg)  # nothing is tried: port 9 would refuse the connection
    assert refused.value.code == "too_long" and "3 SMS segments" in str(refused.value)
