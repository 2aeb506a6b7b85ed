"""Fixtures for the email channel: the shared corpus, a fake intake, the SMTP server on the
test's own loop, a local aiosmtpd relay that captures (or refuses) outgoing mail, and the real
hub (`live`) with its SMTP intake on the test's loop and its relay pointed at that relay."""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import cast

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from hub.adapters.email.inbound import EmailAdapter, SmtpHandler, SmtpServer
from hub.adapters.email.normalize import EmailLimits, parse_email
from hub.app import Hub
from hub.config import Settings
from hub.model import Accepted, InboundMessage, SpoolItem, SpoolReceipt
from hub.spool import SpoolUnavailable
from tests.support.corpus import CORPUS

DOMAIN = "city.example"
SECRET = b"test-reply-secret"
LIMITS = EmailLimits(max_attachment_bytes=2_000_000, max_attachments=20, domains=(DOMAIN,),
                     inboxes={f"roads@{DOMAIN}": "roads"})


@dataclass
class CorpusMail:
    name: str
    raw: bytes
    bounce: bool = False  # sisimai: sent with an empty return path, as bounces are


def _wrap(body: bytes, name: str, subtype: str = "plain") -> bytes:
    """A reply-body fixture (.txt/.html) as the complete mail a client would have sent."""
    headers = (f"From: Citizen <citizen@example.org>\r\nTo: help@{DOMAIN}\r\n"
               f"Subject: Re: corpus {name}\r\nMessage-ID: {make_msgid(domain='example.org')}\r\n"
               f"MIME-Version: 1.0\r\nContent-Type: text/{subtype}; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n")
    return headers.encode() + body


def corpus_mails() -> list[CorpusMail]:
    if not CORPUS.is_dir():
        pytest.fail(f"the email corpus is missing at {CORPUS}; set HUB_CORPUS_DIR")
    mails: list[CorpusMail] = []
    for path in sorted((CORPUS / "cpython-test-email-data").glob("msg_*.txt")):
        mails.append(CorpusMail(f"cpython/{path.name}", path.read_bytes()))
    box = mailbox.mbox(CORPUS / "cpython-test-email-data" / "mailbox_01.mbox", create=False)
    try:
        for key in box.iterkeys():
            mails.append(CorpusMail(f"cpython/mailbox_01.mbox#{key}", box.get_bytes(key)))
    finally:
        box.close()
    for folder in ("spamscope-mail-parser", "django-helpdesk"):
        for path in sorted((CORPUS / folder).iterdir()):
            mails.append(CorpusMail(f"{folder}/{path.name}", path.read_bytes()))
    talon = CORPUS / "mailgun-talon"
    for path in sorted(talon.rglob("*")):
        if not path.is_file() or path.name.endswith("_reply_text"):
            continue
        relative = f"mailgun-talon/{path.relative_to(talon)}"
        if path.suffix == ".eml":
            mails.append(CorpusMail(relative, path.read_bytes()))
        else:
            subtype = "html" if path.suffix == ".html" else "plain"
            mails.append(CorpusMail(relative, _wrap(path.read_bytes(), path.name, subtype)))
    for path in sorted((CORPUS / "sisimai-set-of-emails").rglob("*.eml")):
        mails.append(CorpusMail(f"sisimai/{path.parent.name}/{path.name}", path.read_bytes(),
                                bounce=path.parent.name == "bsd"))
    for folder in ("zapier-email-reply-parser", "alfonsrv-mail-parser-reply"):
        for path in sorted((CORPUS / folder).glob("*.txt")):
            mails.append(CorpusMail(f"{folder}/{path.name}", _wrap(path.read_bytes(), path.name)))
    return mails


@dataclass
class FakeIntake:
    """Spool and intake in one: `put` parses at once and accepts; records accepted messages,
    dedupes by provider id, fails on demand. (The real spool is tested in test_e2e.py.)"""

    messages: list[InboundMessage] = field(default_factory=list)
    fail_next: int = 0
    crash_next: int = 0
    delay: float = 0.0
    duplicates: int = 0
    _ids: dict[str, int] = field(default_factory=dict)

    async def put(self, item: SpoolItem) -> SpoolReceipt:
        assert item.channel == "email" and item.dedupe_key
        msg = parse_email(item.payload, mail_from=item.envelope["mail_from"],
                          rcpt_to=item.envelope["rcpt_to"], limits=LIMITS, reply_secret=SECRET,
                          received_at=item.received_at)
        accepted = await self.accept(msg)
        return SpoolReceipt(accepted.message_id, duplicate=accepted.duplicate)

    async def accept(self, msg: InboundMessage) -> Accepted:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next -= 1
            raise SpoolUnavailable("database is locked")
        if self.crash_next:
            self.crash_next -= 1
            raise RuntimeError("a bug in the intake")
        if msg.provider_id in self._ids:
            self.duplicates += 1
            return Accepted(self._ids[msg.provider_id], 1, "REF", duplicate=True)
        self.messages.append(msg)
        self._ids[msg.provider_id] = len(self.messages)
        return Accepted(len(self.messages), len(self.messages), "ABCDEFGH23",
                        new_conversation=True)


@dataclass
class RunningSmtp:
    server: SmtpServer
    intake: FakeIntake
    port: int


@pytest.fixture
def fake_intake() -> FakeIntake:
    return FakeIntake()


async def start_smtp(intake: object, *, max_message_bytes: int = 5_000_000,
                     limits: EmailLimits = LIMITS, **kwargs: object) -> tuple[SmtpServer, int]:
    handler = SmtpHandler(intake, limits)  # type: ignore[arg-type]
    server = SmtpServer(handler, host="127.0.0.1", port=0,
                        max_message_bytes=max_message_bytes, **kwargs)
    bound = await server.start()
    return server, int(bound[0][1])


@pytest.fixture
async def smtp(fake_intake: FakeIntake) -> AsyncIterator[RunningSmtp]:
    server, port = await start_smtp(fake_intake)
    yield RunningSmtp(server, fake_intake, port)
    await server.stop()


class RelayHandler:
    """A stand-in relay: captures mail, or answers with a chosen code."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.answer = "250 2.0.0 Ok: queued as RELAY123"
        self.rcpt_answer = "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if self.rcpt_answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return self.rcpt_answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.answer.startswith("250"):
            self.received.append(envelope)
        return self.answer


@dataclass
class Relay:
    handler: RelayHandler
    port: int


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    handler = RelayHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="relay.test", loop=loop), "127.0.0.1", 0)
    yield Relay(handler, server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


@pytest.fixture(scope="session")
def corpus() -> Iterator[list[CorpusMail]]:
    yield corpus_mails()


# -- the real hub: SMTP intake on the test's loop, real database, the relay above -------------


CITIZEN = "ana.perez@example.org"
HELP = f"help@{DOMAIN}"
FROM_HEADER = f"City Hall <{HELP}>"
HUB_MAX_MESSAGE_BYTES = 1_000_000


@dataclass
class LiveHub:
    """A started Hub (real EmailAdapter, real database) and the relay capturing its mail."""

    hub: Hub
    port: int
    relay: Relay

    async def send(self, raw: bytes, *, sender: str = CITIZEN,
                   rcpt: str = HELP) -> tuple[int, str]:
        """Deliver over SMTP, then work the spool (as the worker does right behind the 250)."""
        answer = await send_mail(self.port, raw, sender=sender, rcpt=rcpt)
        await self.hub.spool_worker.drain()
        return answer

    async def outgoing(self) -> list[EmailMessage]:
        """Run every pending delivery job, then every mail the relay captured, oldest first."""
        await self.hub.jobs.drain()
        return [parse_captured(envelope) for envelope in self.relay.handler.received]


async def send_mail(port: int, raw: bytes, *, sender: str = CITIZEN,
                    rcpt: str = HELP) -> tuple[int, str]:
    """(code, text) of the server's final answer to one delivery, success or refusal."""
    try:  # a client object, not aiosmtplib.send(): that refuses the bounces' empty sender
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) as client:
            _errors, response = await client.sendmail(sender, [rcpt], raw)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code, exc.recipients[0].message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return 250, response


def parse_captured(envelope: Envelope) -> EmailMessage:
    content = envelope.original_content or b""
    return cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(content))


def citizen_mail(
    body: str = "There is a deep pothole in front of number 12.",
    *,
    from_: str = f"Ana Pérez <{CITIZEN}>",
    to: str = HELP,
    subject: str = "Pothole on Main St",
    headers: dict[str, str] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
) -> tuple[bytes, str]:
    """(raw bytes with CRLF line ends, the bare Message-ID) of a mail as a client sends it."""
    mail = EmailMessage()
    mail["From"] = from_
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate(usegmt=True)
    message_id = make_msgid(domain="example.org")
    mail["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body)
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return mail.as_bytes(policy=policy.SMTP), message_id.strip("<>")


def live_settings(settings_data: dict[str, dict[str, object]], relay_port: int) -> Settings:
    settings_data["smtp"] = {"enabled": True, "host": "127.0.0.1", "port": 0,
                             "domains": [DOMAIN], "max_message_bytes": HUB_MAX_MESSAGE_BYTES,
                             "max_attachment_bytes": 500_000,
                             "inboxes": {f"roads@{DOMAIN}": "roads"}}
    settings_data["email"] = {"acknowledge": True, "from": FROM_HEADER,
                              "relay_host": "127.0.0.1", "relay_port": relay_port,
                              "relay_timeout_seconds": 10}
    return Settings.model_validate(settings_data)


@pytest.fixture
async def live(settings_data: dict[str, dict[str, object]],
               relay: Relay) -> AsyncIterator[LiveHub]:
    """`Hub(settings)` as `hub serve` builds it: the configured adapters, started on this loop."""
    hub = Hub(live_settings(settings_data, relay.port))
    await hub.start()
    try:
        adapter = hub.adapters.get("email")
        assert isinstance(adapter, EmailAdapter), "smtp.enabled must configure the email adapter"
        assert adapter.bound_port is not None
        yield LiveHub(hub, adapter.bound_port, relay)
    finally:
        await hub.stop()


# -- the shipped rules: the hub prepared (not listening), mail handed to the intake at a chosen time


RULES = Path(__file__).resolve().parents[3] / "routing_rules"


@pytest.fixture
async def city(settings_data: dict[str, dict[str, object]], relay: Relay) -> AsyncIterator[Hub]:
    """The hub as a city runs it: the repository's routing_rules/, acknowledgments on, an inbox
    roads@ for queue roads, the relay above."""
    settings_data["routing"] = {"rules_dir": str(RULES), "watch": False}
    hub = Hub(live_settings(settings_data, relay.port))
    await hub.prepare()
    yield hub
    await hub.stop()


async def arrive(hub: Hub, raw: bytes, when: datetime, sender: str = CITIZEN,
                 rcpt: str = HELP) -> Accepted:
    """A mail as the spool worker hands it over, received at `when`."""
    msg = parse_email(raw, mail_from=sender, rcpt_to=[rcpt], received_at=when,
                      limits=EmailLimits.from_settings(hub.settings.smtp),
                      reply_secret=hub.reply_secret)
    return await hub.intake.accept(msg)
