"""The SMTP intake over real sockets: aiosmtplib/smtplib clients against the server on this loop."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import subprocess
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from hub.adapters.email.inbound import MAX_LINE_BYTES

from .conftest import DOMAIN, CorpusMail, FakeIntake, RunningSmtp, start_smtp


def _mail(body: str = "There is a pothole on Main St", msgid: str = "<p1@example.org>") -> bytes:
    mail = EmailMessage()
    mail["From"] = "Ana <ana@example.org>"
    mail["To"] = f"help@{DOMAIN}"
    mail["Subject"] = "Pothole"
    mail["Message-ID"] = msgid
    mail.set_content(body)
    return mail.as_bytes()


async def _send(port: int, raw: bytes, *, sender: str = "ana@example.org",
                rcpt: str = f"help@{DOMAIN}") -> tuple[int, str]:
    """(code, text) of the final answer, whether it is a success or a refusal."""
    try:
        _errors, response = await aiosmtplib.send(raw, sender=sender, recipients=[rcpt],
                                                 hostname="127.0.0.1", port=port, timeout=30)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code, exc.recipients[0].message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return int(response.split()[0]) if response[:3].isdigit() else 250, response


async def test_new_mail_is_accepted_after_the_intake(smtp: RunningSmtp) -> None:
    code, _ = await _send(smtp.port, _mail())
    assert code == 250
    (msg,) = smtp.intake.messages
    assert msg.sender == "ana@example.org" and msg.recipient == f"help@{DOMAIN}"
    assert msg.meta["mail_from"] == "ana@example.org" and msg.text.startswith("There is")
    assert msg.raw and b"Message-ID: <p1@example.org>" in msg.raw


async def test_foreign_domain_is_refused_550_no_relay(smtp: RunningSmtp) -> None:
    code, text = await _send(smtp.port, _mail(), rcpt="someone@gmail.example")
    assert code == 550 and "5.1.1" in text
    assert smtp.intake.messages == []


async def test_oversized_552_and_nothing_stored(fake_intake: FakeIntake) -> None:
    server, port = await start_smtp(fake_intake, max_message_bytes=20_000)
    try:
        big = _mail("x" * 200 + "\n" + ("line of text\n" * 3000))
        code, _ = await _send(port, big)
        assert code == 552
        # The SIZE declared in MAIL FROM is refused before any data is sent (smtplib blocks:
        # it runs in a thread, the server on this loop).
        size, code = await asyncio.to_thread(_declare_size, port, 50_000)
        assert (size, code) == (20_000, 552)
        assert fake_intake.messages == []
        assert (await _send(port, _mail()))[0] == 250  # and the server goes on
    finally:
        await server.stop()


def _declare_size(port: int, size: int) -> tuple[int, int]:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        advertised = int(client.esmtp_features["size"])
        return advertised, client.mail("ana@example.org", [f"SIZE={size}"])[0]


async def test_intake_failure_451_then_the_resend_is_stored_once(smtp: RunningSmtp) -> None:
    smtp.intake.fail_next = 1
    code, text = await _send(smtp.port, _mail())
    assert code == 451 and "4.3.0" in text
    assert "database" not in text  # nothing of the error goes back to the client
    smtp.intake.crash_next = 1
    assert (await _send(smtp.port, _mail()))[0] == 451  # a bug is a 451 too, not a traceback
    assert (await _send(smtp.port, _mail()))[0] == 250
    assert (await _send(smtp.port, _mail()))[0] == 250  # the sender's duplicate retry
    assert len(smtp.intake.messages) == 1


async def test_long_lines_are_accepted(smtp: RunningSmtp) -> None:
    """Lines far beyond RFC 5321's 1,000 octets (unwrapped HTML) are taken, up to 1 MiB."""
    line = "a" * 50_000
    raw = (b"From: ana@example.org\r\nTo: help@city.example\r\nMessage-ID: <long@x>\r\n"
           b"Subject: long\r\nContent-Type: text/html\r\n\r\n<p>" + line.encode() + b"</p>\r\n")
    assert (await _send(smtp.port, raw))[0] == 250
    assert line in (smtp.intake.messages[0].html or "")
    too_long = raw.replace(line.encode(), b"b" * (MAX_LINE_BYTES + 10))
    code, _ = await _send(smtp.port, too_long.replace(b"<long@x>", b"<long2@x>"))
    assert code in (500, 552)  # deliberate: a single line over 1 MiB is not a person's mail


async def test_smtputf8_and_8bitmime(smtp: RunningSmtp) -> None:
    raw = ("From: José <josé@ejemplo.example>\r\nTo: ayuda@city.example\r\n"
           "Message-ID: <utf8@x>\r\nSubject: Calle rota ñ\r\nContent-Type: text/plain; "
           "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nLa calle está rota\r\n"
           ).encode()
    _errors, response = await aiosmtplib.send(
        raw, sender="josé@ejemplo.example", recipients=["ayuda@city.example"],
        hostname="127.0.0.1", port=smtp.port, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    assert response.startswith("2.0.0") or "OK" in response
    (msg,) = smtp.intake.messages
    assert msg.sender == "josé@ejemplo.example" and msg.text == "La calle está rota"


async def test_one_bad_message_never_blocks_the_others(smtp: RunningSmtp) -> None:
    smtp.intake.delay = 0.01
    garbage = b"\xff\xfe\x00garbage without headers \x00\r\n" * 50
    mails = [garbage] + [_mail(f"mail {i}", f"<c{i}@example.org>") for i in range(20)]
    results = await asyncio.gather(*(_send(smtp.port, raw) for raw in mails))
    assert [code for code, _ in results] == [250] * 21
    flagged = [m for m in smtp.intake.messages if "malformed" in m.flags]
    assert len(smtp.intake.messages) == 21 and len(flagged) >= 1


async def test_starttls_when_a_certificate_is_configured(fake_intake: FakeIntake,
                                                         tmp_path: Path) -> None:
    from hub.adapters.email.inbound import tls_context

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server, port = await start_smtp(fake_intake, tls=tls_context(str(cert), str(key)))
    try:
        client_tls = ssl.create_default_context(cafile=str(cert))
        client_tls.check_hostname = False
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True,
                                   tls_context=client_tls) as client:
            await client.sendmail("ana@example.org", [f"help@{DOMAIN}"], _mail())
        assert len(fake_intake.messages) == 1
    finally:
        await server.stop()


async def test_every_corpus_mail_over_smtp(smtp: RunningSmtp, corpus: list[CorpusMail]) -> None:
    """Each mail of the shared corpus is answered 250, or refused for a reason we chose."""
    deliberate = {552: "larger than max_message_bytes"}
    outcomes: Counter[str] = Counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp.port, timeout=30) as client:
        for mail in corpus:
            sender = "" if mail.bounce else "citizen@example.org"
            try:
                await client.sendmail(sender, [f"help@{DOMAIN}"], mail.raw)
                outcomes["250 accepted"] += 1
            except aiosmtplib.SMTPResponseException as exc:
                assert exc.code in deliberate, f"{mail.name}: {exc.code} {exc.message}"
                outcomes[f"{exc.code} {deliberate[exc.code]}"] += 1
                await client.rset()
    stored, duplicates = len(smtp.intake.messages), smtp.intake.duplicates
    print(f"\ncorpus over SMTP ({len(corpus)} mails): {dict(outcomes)}; stored {stored}, "
          f"recognised as duplicates {duplicates} (same Message-ID and sender)")
    assert sum(outcomes.values()) == len(corpus)
    # Every 250 was a commit: a new message, or a dedupe hit on (Message-ID, sender), as the
    # corpus reuses fixtures (sisimai variants share Message-IDs).
    assert stored + duplicates == outcomes["250 accepted"]
    assert stored > 700


def test_the_server_is_not_the_threaded_controller() -> None:
    import hub.adapters.email.inbound as inbound

    assert "Controller" not in vars(inbound)


@pytest.mark.parametrize("rcpt", [f"help+c1-aaaaaaaaaaaa@{DOMAIN}", f"Roads@{DOMAIN.upper()}"])
async def test_plus_addresses_and_case_are_our_domain(smtp: RunningSmtp, rcpt: str) -> None:
    assert (await _send(smtp.port, _mail(), rcpt=rcpt))[0] == 250
