"""The MIME caps and the raw-only path: a mail too deep or too wide for the parser is kept raw,
flagged and deduplicated like any other; real mail never meets the caps."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from hub.adapters.email import normalize
from hub.adapters.email.normalize import (
    MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
    parse_email,
    parse_email_raw_only,
)
from hub.model import InboundMessage
from hub.tokens import make_reply_token

from .conftest import CORPUS, DOMAIN, LIMITS, SECRET, CorpusMail
from .test_fuzz import _HEAD, assert_usable, mutate, nested_messages, nested_multipart, parse_watched

WHEN = datetime(2024, 6, 11, 9, 30, tzinfo=UTC)
CAP_FLAGS = {"mime_too_deep", "too_many_parts"}


def flat_parts(count: int) -> bytes:
    parts = b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(count))
    return _HEAD + b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n' + parts + b"--p--\r\n"


def status_report(blocks: int) -> bytes:
    return (_HEAD + b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"'
            b"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
            b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
            + b"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\n\r\n" * blocks
            + b"--r--\r\n")


def comparable(msg: InboundMessage) -> dict[str, Any]:
    return dataclasses.asdict(msg)


# -- the caps --------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [nested_multipart(1_000), nested_messages(1_000)],
                         ids=["multipart", "message-rfc822"])
def test_thousand_levels_kept_raw_only_and_flagged(raw: bytes) -> None:
    msg = parse_watched(raw, "nested-1000", mail_from="ana@example.org",
                        rcpt_to=[f"help@{DOMAIN}"], limits=LIMITS)
    assert {"malformed", "mime_too_deep"} <= set(msg.flags)
    assert msg.provider_id == "hostile@example.org|ana@example.org"  # Message-ID rule kept
    assert msg.sender == "ana@example.org" and msg.sender_name == "Ana"
    assert msg.subject == "hostile" and msg.recipient == f"help@{DOMAIN}"
    assert msg.raw == raw and msg.attachments == ()
    assert msg.meta["raw_only"] == "mime_too_deep"
    assert msg.meta["mime_shape"]["depth"] > MAX_MIME_DEPTH


def test_thousand_levels_text_is_the_first_plain_part() -> None:
    assert parse_watched(nested_multipart(1_000)).text == "hello"


def test_depth_at_the_cap_parses_in_full() -> None:
    at_cap = parse_email(nested_multipart(MAX_MIME_DEPTH))
    assert not CAP_FLAGS & set(at_cap.flags) and at_cap.text == "hello"
    over = parse_email(nested_multipart(MAX_MIME_DEPTH + 1))
    assert "mime_too_deep" in over.flags and over.text == "hello"


def test_too_many_parts() -> None:
    fine = parse_email(flat_parts(100))
    assert not CAP_FLAGS & set(fine.flags) and "part 99" in (fine.full_text or "")
    wide = parse_watched(flat_parts(MAX_MIME_PARTS + 10), "wide")
    assert {"malformed", "too_many_parts"} <= set(wide.flags)
    assert wide.text == "part 0" and wide.provider_id == "hostile@example.org|ana@example.org"


def test_parts_measured_after_the_full_parse() -> None:
    """Status blocks pass the scan (its bound for them is loose); the parsed tree decides."""
    report = parse_email(status_report(5), mail_from="")
    assert not CAP_FLAGS & set(report.flags) and report.meta["delivery_report"]
    flooded = parse_watched(status_report(MAX_MIME_PARTS + 10), "flooded", mail_from="")
    assert "too_many_parts" in flooded.flags and flooded.automatic
    assert flooded.meta["mime_shape"]["parts"] > MAX_MIME_PARTS


def test_resend_over_the_caps_dedupes_with_the_normal_key() -> None:
    small = parse_email(_HEAD + b"Content-Type: text/plain\r\n\r\nhello\r\n",
                        mail_from="bounce@elsewhere.example")
    deep = parse_email(nested_multipart(1_000), mail_from="bounce@elsewhere.example")
    assert "mime_too_deep" in deep.flags
    assert deep.provider_id == small.provider_id == "hostile@example.org|ana@example.org"
    assert deep.thread_key == small.thread_key


def test_real_mail_never_meets_the_caps(corpus: list[CorpusMail],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every corpus mail parses in full, and exactly as with no caps at all."""
    with_attachments = []
    for mail in corpus:
        msg = parse_email(mail.raw, limits=LIMITS, received_at=WHEN)
        assert not CAP_FLAGS & set(msg.flags) and "raw_only" not in msg.meta, mail.name
        if msg.attachments:
            with_attachments.append((mail, msg))
    assert len(with_attachments) > 20
    monkeypatch.setattr(normalize, "MAX_MIME_DEPTH", 10**9)
    monkeypatch.setattr(normalize, "MAX_MIME_PARTS", 10**9)
    for mail, capped in with_attachments:
        uncapped = parse_email(mail.raw, limits=LIMITS, received_at=WHEN)
        assert comparable(capped) == comparable(uncapped), mail.name


def test_mail_with_attachments_keeps_them() -> None:
    msg = parse_email((CORPUS / "spamscope-mail-parser" / "mail_test_10").read_bytes(),
                      limits=LIMITS)
    assert [(a.filename, a.content_type, len(a.data)) for a in msg.attachments] == [
        ("part-1.gif", "image/gif", 27271), ("part-2.gif", "image/gif", 50194),
        ("part-3.gif", "image/gif", 7962),
        ("Move To Eight ZWEP6227F.pdf", "application/octet-stream", 140061)]
    assert msg.flags == () and msg.text.startswith("Gentili Business Partner")


def test_scan_bounds_are_upper_bounds(corpus: list[CorpusMail],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-scan may overestimate, never underestimate, what the parser builds."""
    monkeypatch.setattr(normalize, "_MAX_STATUS_BLOCKS", -1)  # count status blocks always
    rng = random.Random(7)
    mails = [m.raw for m in corpus] + [mutate(rng, m.raw)[0] for m in corpus]
    mails += [nested_multipart(20), nested_messages(20), flat_parts(40), status_report(30)]
    for raw in mails:
        depth, parts = normalize._mime_bounds(raw)
        real_depth, real_parts = normalize._mime_shape(normalize._load(raw)[0])
        assert depth >= min(real_depth, MAX_MIME_DEPTH + 1), raw[:200]
        assert parts >= min(real_parts, MAX_MIME_PARTS + 1), raw[:200]


# -- parse_email_raw_only ----------------------------------------------------------------------------


def _reply(token: str) -> bytes:
    return (b"From: =?utf-8?q?Ana_P=C3=A9rez?= <Ana@Example.org>\r\nTo: help@city.example\r\n"
            b"Subject: Re: Pothole [#ABCDEFGH23]\r\nMessage-ID: <r1@example.org>\r\n"
            b"In-Reply-To: <" + token.encode() + b".x@city.example>\r\nContent-Language: es\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nSigue roto.\r\n")


def test_raw_only_matches_the_full_parse_on_identity_and_threading() -> None:
    token = make_reply_token(9, SECRET)
    raw = _reply(token)
    kwargs: dict[str, Any] = {"mail_from": "ana@example.org", "rcpt_to": [f"help@{DOMAIN}"],
                              "limits": LIMITS, "reply_secret": SECRET, "received_at": WHEN}
    full = parse_email(raw, **kwargs)
    raw_only = parse_email_raw_only(raw, **kwargs, reason="parse_timeout")
    for name in ("provider_id", "sender", "sender_name", "recipient", "subject", "thread",
                 "thread_key", "received_at", "language", "raw"):
        assert getattr(raw_only, name) == getattr(full, name), name
    assert raw_only.flags == ("malformed", "parse_timeout")
    assert raw_only.text == raw_only.full_text == "Sigue roto."
    assert raw_only.meta["raw_only"] == "parse_timeout" and not raw_only.automatic


def test_raw_only_never_runs_the_mime_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoFullParse:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the full MIME parser must not run")

    monkeypatch.setattr(normalize, "BytesParser", NoFullParse)
    msg = parse_email_raw_only(flat_parts(3), reason="crashed")
    assert msg.text == "part 0" and msg.flags == ("malformed", "crashed")
    assert msg.provider_id == "hostile@example.org|ana@example.org"


def test_raw_only_text_of_html_mail_and_automatic_verdict() -> None:
    raw = (b"From: MAILER-DAEMON@mx.example.org\r\nSubject: Undelivered Mail\r\n"
           b"Content-Type: text/html\r\n\r\n<p>Your mail <b>failed</b></p><script>x()</script>")
    msg = parse_email_raw_only(raw, mail_from="", reason="parse_timeout")
    assert msg.text == "Your mail failed" and msg.automatic
    assert msg.provider_id.startswith("sha256:") and "no_message_id" in msg.flags


@pytest.mark.parametrize("raw", [b"", b"\x00" * 100, b"\xff\xfe" * 50, b"From: x\r\n",
                                 b"Content-Type: multipart/mixed; boundary=\x00\r\n\r\n--\x00",
                                 b"From: " + b"(" * 5_000 + b"\r\n\r\n", nested_messages(5_000)])
def test_raw_only_never_raises(raw: bytes) -> None:
    msg = parse_email_raw_only(raw, mail_from="x@example.org", reason="parse_timeout")
    assert_usable(msg, raw, "raw-only")
    assert msg.flags[:2] == ("malformed", "parse_timeout")
