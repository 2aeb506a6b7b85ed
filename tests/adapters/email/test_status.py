"""Bounces: the sisimai corpus, its negatives, and a bounce of one of our own replies."""

from __future__ import annotations

from collections import Counter

from hub.adapters.email import build_message, parse_email
from hub.model import OutboundMessage
from hub.tokens import make_reply_token

from .conftest import CORPUS, DOMAIN, SECRET

SISIMAI = CORPUS / "sisimai-set-of-emails"


def test_sisimai_bounces_are_reports_with_the_original_message_id() -> None:
    counts: Counter[str] = Counter()
    for path in sorted((SISIMAI / "bsd").glob("*.eml")):
        if path.name.startswith(("rfc3834", "arf")):
            continue  # auto-replies and abuse reports: not delivery failures
        msg = parse_email(path.read_bytes(), mail_from="")
        report = msg.meta.get("delivery_report")
        counts["bounces"] += 1
        assert msg.automatic, path.name
        if report:
            counts["recognised"] += 1
            counts[f"status {report['status']}"] += 1
            counts["refers_to found"] += bool(report["refers_to"])
            counts["diagnostic found"] += bool(report["diagnostic"])
    print(f"\nsisimai bounces: {dict(counts)}")
    assert counts["recognised"] >= 0.9 * counts["bounces"]
    assert counts["refers_to found"] >= 0.8 * counts["recognised"]


def test_sisimai_negatives_are_not_bounces() -> None:
    for name in ("is-not-bounce-01.eml", "is-not-bounce-02.eml"):
        msg = parse_email((SISIMAI / "not" / name).read_bytes(), mail_from="a@example.com")
        assert "delivery_report" not in msg.meta, name


def test_bounce_of_our_reply_refers_to_our_message_id() -> None:
    """A Postfix-style DSN wrapping one of our replies names its Message-ID."""
    ours, our_id = build_message(OutboundMessage(
        message_id=1, conversation_id=4, channel="email", to="gone@example.org", body="Hello",
        idempotency_key="k", reference="ABCDEFGH23", reply_token=make_reply_token(4, SECRET)),
        f"City <help@{DOMAIN}>")
    dsn = (b"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
           b"To: help@city.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
           b"Message-ID: <dsn1@mx.example.org>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
           b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered."
           b"\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
           b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\n"
           b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
           b"\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n" + ours.as_bytes()
           + b"\r\n--B--\r\n")
    msg = parse_email(dsn, mail_from="")
    report = msg.meta["delivery_report"]
    assert report["status"] == "bounced" and report["refers_to"] == [our_id]
    assert report["recipient"] == "gone@example.org"
    assert "550 5.1.1" in report["diagnostic"] and msg.automatic


def test_text_bounce_quoting_our_headers() -> None:
    raw = (b"From: MAILER-DAEMON <>\r\nSubject: failure notice\r\nMessage-ID: <q1@mx>\r\n\r\n"
           b"Hi. This is the qmail-send program.\r\n<gone@example.org>:\r\n"
           b"550 5.1.1 mailbox unavailable\r\n\r\n--- Below this line is a copy of the message."
           b"\r\n\r\nMessage-ID: <c4-abc.123@city.example>\r\nSubject: Re: x\r\n\r\nbody\r\n")
    report = parse_email(raw, mail_from="").meta["delivery_report"]
    assert report["refers_to"] == ["c4-abc.123@city.example"]
    assert report["recipient"] == "gone@example.org" and report["status"] == "bounced"
