"""Replies through a local aiosmtpd relay: headers, threading, and relay error mapping."""

from __future__ import annotations

import asyncio
import socket
from email import message_from_bytes, policy

import pytest

from hub.adapters.base import PermanentError, TransientError
from hub.adapters.email import EmailAdapter, parse_email
from hub.adapters.email.outbound import BUILD_POLICY, SMTP_POLICY, build_message
from hub.config import Settings
from hub.model import OutboundAttachment, OutboundMessage
from hub.tokens import make_reply_token, verify_reply_token

from .conftest import DOMAIN, LIMITS, SECRET, Relay


def _adapter(port: int) -> EmailAdapter:
    settings = Settings.model_validate({
        "email": {"from": f"City Hall <help@{DOMAIN}>", "relay_host": "127.0.0.1",
                  "relay_port": port, "relay_timeout_seconds": 5},
        "smtp": {"domains": [DOMAIN]},
    })
    return EmailAdapter(settings, reply_secret=SECRET)


def _reply(**changes: object) -> OutboundMessage:
    values: dict[str, object] = dict(
        message_id=9, conversation_id=5, channel="email", to="ana@example.org",
        body="We fixed the pothole.\n\nRegards <City>", idempotency_key="outbox-9",
        reference="ABCDEFGH23", subject="Re: Pothole on Main St",
        reply_token=make_reply_token(5, SECRET), in_reply_to="p1@example.org",
        references=("p0@example.org", "p1@example.org"))
    values.update(changes)
    return OutboundMessage(**values)  # type: ignore[arg-type]


async def test_reply_headers_and_threading(relay: Relay) -> None:
    adapter = _adapter(relay.port)
    result = await adapter.send(_reply(attachments=(
        OutboundAttachment("map.pdf", "application/pdf", b"%PDF-1.4"),)))
    (envelope,) = relay.handler.received
    assert envelope.mail_from == f"help@{DOMAIN}" and envelope.rcpt_tos == ["ana@example.org"]
    mail = message_from_bytes(envelope.original_content, policy=policy.default)
    token = make_reply_token(5, SECRET)
    assert mail["Message-ID"] == f"<{result.provider_id}>" and result.thread_key == result.provider_id
    assert result.provider_id.startswith(f"{token}.") and result.provider_id.endswith(f"@{DOMAIN}")
    assert mail["In-Reply-To"] == "<p1@example.org>"
    assert mail["References"] == "<p0@example.org> <p1@example.org>"
    assert mail["Reply-To"].addresses[0].addr_spec == f"help+{token}@{DOMAIN}"
    assert mail["Subject"] == "Re: Pothole on Main St [#ABCDEFGH23]"
    assert mail["Auto-Submitted"] is None
    assert mail.get_body(("plain",)).get_content().startswith("We fixed")
    html = mail.get_body(("html",)).get_content()
    assert "Regards &lt;City&gt;" in html  # text escaped, never injected
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_filename() == "map.pdf" and attachment.get_content() == b"%PDF-1.4"
    # A second run of the same job sends the same Message-ID: receivers can dedupe it.
    again = await adapter.send(_reply())
    assert again.provider_id == result.provider_id


async def test_acknowledgment_is_auto_submitted(relay: Relay) -> None:
    await _adapter(relay.port).send(_reply(automatic=True, subject="Pothole"))
    mail = message_from_bytes(relay.handler.received[0].original_content, policy=policy.default)
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["Subject"] == "Pothole [#ABCDEFGH23]"  # starts from our side: no "Re:"


async def test_citizen_reply_to_our_mail_threads_back(relay: Relay) -> None:
    """Our Message-ID and Reply-To carry the token the inbound side finds and verifies."""
    result = await _adapter(relay.port).send(_reply())
    ours = message_from_bytes(relay.handler.received[0].original_content, policy=policy.default)
    answer = (f"From: Ana <ana@example.org>\r\nTo: {ours['Reply-To']}\r\n"
              f"Subject: Re: {ours['Subject']}\r\nMessage-ID: <a2@example.org>\r\n"
              f"In-Reply-To: {ours['Message-ID']}\r\nReferences: {ours['References']} "
              f"{ours['Message-ID']}\r\n\r\nThank you!\r\n").encode()
    reply_to = ours["Reply-To"].addresses[0].addr_spec
    msg = parse_email(answer, mail_from="ana@example.org", rcpt_to=[reply_to], limits=LIMITS,
                      reply_secret=SECRET)
    assert msg.thread.refs[0] == result.thread_key
    assert verify_reply_token(msg.thread.reply_token or "", SECRET) == 5
    assert msg.thread.reference == "ABCDEFGH23" and msg.recipient == f"help@{DOMAIN}"


@pytest.mark.parametrize(("where", "answer", "error"), [
    ("data", "451 4.3.0 Try later", TransientError),
    ("data", "554 5.7.1 Rejected as spam", PermanentError),
    ("rcpt", "450 4.2.1 Mailbox busy", TransientError),
    ("rcpt", "550 5.1.1 No such user", PermanentError),
])
async def test_relay_answers_map_to_transient_or_permanent(
        relay: Relay, where: str, answer: str, error: type[Exception]) -> None:
    setattr(relay.handler, "answer" if where == "data" else "rcpt_answer", answer)
    with pytest.raises(error) as caught:
        await _adapter(relay.port).send(_reply())
    assert answer[:3] in str(caught.value)


async def test_relay_unreachable_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with pytest.raises(TransientError):
        await _adapter(free_port).send(_reply())


async def test_invalid_recipient_is_permanent() -> None:
    with pytest.raises(PermanentError):
        await _adapter(1).send(_reply(to="not an address"))


async def test_a_non_ascii_address_goes_out_with_smtputf8(relay: Relay) -> None:
    loop = asyncio.get_running_loop()
    from aiosmtpd.smtp import SMTP

    server = await loop.create_server(
        lambda: SMTP(relay.handler, hostname="relay.test", enable_SMTPUTF8=True, loop=loop),
        "127.0.0.1", 0)
    try:
        adapter = _adapter(server.sockets[0].getsockname()[1])
        await adapter.send(_reply(to="josé@example.org"))
    finally:
        server.close()
    (envelope,) = relay.handler.received
    assert envelope.rcpt_tos == ["josé@example.org"] and "SMTPUTF8" in envelope.mail_options
    assert "To: josé@example.org".encode() in envelope.original_content  # UTF-8, not encoded


async def test_a_non_ascii_address_without_smtputf8_fails_for_good(relay: Relay) -> None:
    adapter = _adapter(relay.port)  # the fixture's relay does not offer SMTPUTF8
    with pytest.raises(PermanentError) as failure:
        await adapter.send(_reply(to="josé@example.org"))
    assert failure.value.code == "smtputf8_unsupported" and not relay.handler.received
    assert "SMTPUTF8" in str(failure.value)


async def test_a_non_ascii_domain_goes_out_in_its_ascii_form(relay: Relay) -> None:
    await _adapter(relay.port).send(_reply(to="ana@bücher.example"))
    (envelope,) = relay.handler.received
    assert envelope.rcpt_tos == ["ana@xn--bcher-kva.example"]


@pytest.mark.parametrize("body", [
    "We fixed the pothole.",
    "A line that names our boundary:\n--=_civic-hub-alternative\nand goes on.",
    "Grüße aus dem Rathaus. " * 40,  # 8bit or quoted-printable, long lines
    "x" * 2000,
])
def test_a_mail_is_written_as_the_standard_smtp_policy_writes_it(body: str) -> None:
    """Headers are folded once per header object and the alternative's boundary is preset:
    the bytes on the wire are still those of email.policy.SMTP, mail after mail."""
    reply = _reply(body=body, subject="Re: " + "a long subject that has to be folded " * 3)
    for _ in range(2):  # the second mail reuses header objects, and their folds, of the first
        mail, _ = build_message(reply, f"City Hall <help@{DOMAIN}>")
        ours = mail.as_bytes(policy=SMTP_POLICY)
        assert ours == mail.as_bytes(policy=policy.SMTP)
        parsed = message_from_bytes(ours, policy=policy.default)
        assert not parsed.defects
        plain = parsed.get_body(("plain",)).get_content()
        assert plain.replace("\r\n", "\n").rstrip("\n") == body
        assert [part.get_content_type() for part in parsed.iter_parts()] == [
            "text/plain", "text/html"]


def test_a_body_holding_the_preset_boundary_gets_a_boundary_of_its_own() -> None:
    plain, _ = build_message(_reply(body="Nothing special."), f"help@{DOMAIN}")
    holding, _ = build_message(_reply(body="see\n--=_civic-hub-alternative--\n"), f"help@{DOMAIN}")
    assert plain.get_boundary() == "=_civic-hub-alternative"
    assert holding.get_boundary() is None  # the generator picks one the parts do not hold
    written = message_from_bytes(holding.as_bytes(policy=SMTP_POLICY), policy=policy.default)
    assert written.get_boundary() not in (None, "=_civic-hub-alternative")
    assert "--=_civic-hub-alternative--" in written.get_body(("plain",)).get_content()


def test_headers_are_parsed_as_the_standard_registry_parses_them_with_classes_built_once() -> None:
    mail, _ = build_message(_reply(to="Ana Pérez <ana@example.org>"), f"City Hall <help@{DOMAIN}>")
    stock = policy.default.header_factory
    for name, value in mail.items():
        assert type(value).__bases__ == stock[name].__bases__, name
        assert str(value) == str(stock(name, str(value))), name
        assert BUILD_POLICY.header_factory[name] is BUILD_POLICY.header_factory[name.upper()]
    with pytest.raises(ValueError):  # a header the standard allows once still comes once
        mail["Subject"] = "a second subject"
