"""The email channel end to end: real SMTP clients against the real hub (intake, database on
SQLite and PostgreSQL, delivery jobs) and a local aiosmtpd relay capturing what the hub sends.

Each test starts the hub as `hub serve` does (`Hub(settings)` + `start()`), with its SMTP server on
the test's own loop on a free port, and reads the outcome from the database and the relay.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

import aiosmtplib
import pytest
from aiohttp.test_utils import TestClient, TestServer
from asyncpg.exceptions import ConnectionDoesNotExistError
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import undefer

from hub import spool as spool_module
from hub.adapters.email import EmailLimits, parse_email
from hub.app import Hub
from hub.auth import create_token
from hub.staff import add_staff
from hub.storage.tables import (
    Attachment,
    Contact,
    Conversation,
    DeliveryEvent,
    Identity,
    Message,
    OutboxItem,
    SpoolEntry,
)
from hub.tokens import make_reply_token
from hub.web.app import create_app

from .conftest import (
    CITIZEN,
    CORPUS,
    DOMAIN,
    FROM_HEADER,
    HELP,
    HUB_MAX_MESSAGE_BYTES,
    CorpusMail,
    LiveHub,
    citizen_mail,
    send_mail,
)

PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 40
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
STRANGER = "mallory@example.net"


# -- reading the outcome ------------------------------------------------------------------------


async def messages(hub: Hub, direction: str | None = "inbound") -> list[Message]:
    query = select(Message).options(undefer(Message.raw), undefer(Message.full_text))
    if direction is not None:
        query = query.where(Message.direction == direction)
    async with hub.db.read() as session:
        return list(await session.scalars(query.order_by(Message.id)))


async def spooled(hub: Hub) -> list[SpoolEntry]:
    async with hub.db.read() as session:
        return list(await session.scalars(
            select(SpoolEntry).options(undefer(SpoolEntry.payload)).order_by(SpoolEntry.id)))


async def conversations(hub: Hub) -> list[Conversation]:
    async with hub.db.read() as session:
        return list(await session.scalars(select(Conversation).order_by(Conversation.id)))


async def count(hub: Hub, model: type[Any]) -> int:
    async with hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def sweeper_rounds(hub: Hub, rounds: int = 3) -> None:
    """What the maintenance loop does on its own, done now (no waiting on its timer)."""
    from hub.workers.maintenance import run_once

    for _ in range(rounds):
        await run_once(hub)
        await hub.jobs.drain()


async def nothing_stored(hub: Hub) -> bool:
    for model in (Message, Conversation, Contact, Attachment, OutboxItem):
        if await count(hub, model):
            return False
    return True


def address(mail: EmailMessage, header: str) -> str:
    pairs = getaddresses([str(mail.get(header, ""))])
    return pairs[0][1] if pairs else ""


def bare(message_id: object) -> str:
    return str(message_id or "").strip().strip("<>")


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def first_contact(live: LiveHub) -> tuple[Conversation, str, EmailMessage]:
    """The citizen's first mail: (its conversation, its Message-ID, our acknowledgment)."""
    raw, message_id = citizen_mail()
    assert (await live.send(raw))[0] == 250
    (conversation,) = await conversations(live.hub)
    (ack,) = await live.outgoing()
    return conversation, message_id, ack


# -- 1. a new mail ------------------------------------------------------------------------------


async def test_new_mail_becomes_a_conversation_and_is_acknowledged_once(live: LiveHub) -> None:
    body = ("There is a deep pothole in front of number 12.\n\n"
            "On Mon, 3 Mar 2025 at 09:12, City Hall <help@city.example> wrote:\n"
            "> An old answer that must not count as new text.\n")
    raw, message_id = citizen_mail(
        body, from_="Ana Pérez <Ana.Perez@Example.ORG>",
        attachments=[("pot hole.jpg", "image/jpeg", PHOTO), ("report.pdf", "application/pdf", PDF)])
    code, text = await live.send(raw, sender="Ana.Perez@Example.ORG")
    assert code == 250, text

    hub = live.hub
    (conversation,) = await conversations(hub)
    (stored,) = await messages(hub)
    async with hub.db.read() as session:
        contact = await session.get_one(Contact, conversation.contact_id)
        identities = list(await session.scalars(
            select(Identity).where(Identity.contact_id == contact.id)))
        attachments = list(await session.scalars(
            select(Attachment).where(Attachment.message_id == stored.id).order_by(Attachment.id)))
    assert contact.name == "Ana Pérez"
    assert [(i.channel, i.address) for i in identities] == [("email", CITIZEN)]
    assert conversation.channel == "email" and conversation.subject == "Pothole on Main St"
    assert stored.sender == CITIZEN and stored.recipient == HELP
    assert stored.thread_rule == "new" and stored.thread_key == message_id
    assert stored.body == "There is a deep pothole in front of number 12."
    assert "An old answer" in (stored.full_text or "")
    assert stored.raw is not None and stored.raw.rstrip(b"\r\n") == raw.rstrip(b"\r\n")
    assert not stored.automatic
    assert [(a.filename, a.content_type, a.size) for a in attachments] == [
        ("pot hole.jpg", "image/jpeg", len(PHOTO)), ("report.pdf", "application/pdf", len(PDF))]
    assert [await hub.blobs.get(a.sha256) for a in attachments] == [PHOTO, PDF]

    (ack,) = await live.outgoing()
    assert address(ack, "To") == CITIZEN
    assert ack["Auto-Submitted"] == "auto-replied"
    assert f"[#{conversation.reference}]" in str(ack["Subject"])
    assert conversation.reference in text_of(ack)
    assert bare(ack["In-Reply-To"]) == message_id
    # Sweeper rounds, run here rather than waited for: none may send the ack again.
    await sweeper_rounds(hub)
    assert len(await live.outgoing()) == 1
    (outbound,) = await messages(hub, "outbound")
    assert outbound.automatic and outbound.delivery_status == "sent"
    assert outbound.thread_key == bare(ack["Message-ID"])


async def test_an_inbox_address_picks_its_default_queue(live: LiveHub) -> None:
    raw, _ = citizen_mail(to=f"roads@{DOMAIN}")
    assert (await live.send(raw, rcpt=f"Roads@{DOMAIN}"))[0] == 250
    (conversation,) = await conversations(live.hub)
    assert (await messages(live.hub))[0].recipient == f"roads@{DOMAIN}"
    assert conversation.queue == "roads"


# -- 2. threading styles of real mail clients ---------------------------------------------------


# Each style: (thread headers, the address the reply goes to) for an answer to our ack.
def gmail(ack: EmailMessage, first_id: str) -> tuple[dict[str, str], str]:
    refs = f"<{first_id}> {ack['Message-ID']}"
    return {"In-Reply-To": str(ack["Message-ID"]), "References": refs}, address(ack, "Reply-To")


def outlook(ack: EmailMessage, first_id: str) -> tuple[dict[str, str], str]:
    # Outlook often drops In-Reply-To/References across Exchange hops (Thread-Index is no use),
    # and the citizen picked help@ from the address book: only the subject's reference is left.
    return {"Thread-Index": "AdmXyZ0123456789abcdef=="}, HELP


def apple_mail(ack: EmailMessage, first_id: str) -> tuple[dict[str, str], str]:
    return {"References": f"<{first_id}> {ack['Message-ID']}"}, address(ack, "Reply-To")


def thunderbird(ack: EmailMessage, first_id: str) -> tuple[dict[str, str], str]:
    # Answering to the Reply-To address (the plus token) from a fresh compose window.
    return {}, address(ack, "Reply-To")


STYLES: dict[str, tuple[Callable[[EmailMessage, str], tuple[dict[str, str], str]], str]] = {
    "gmail": (gmail, "references"),
    "outlook": (outlook, "reference"),
    "apple_mail": (apple_mail, "references"),
    "thunderbird": (thunderbird, "reply_token"),
}


@pytest.mark.parametrize("style", list(STYLES))
async def test_replies_of_each_mail_client_thread(live: LiveHub, style: str) -> None:
    conversation, first_id, ack = await first_contact(live)
    make_headers, expected_rule = STYLES[style]
    headers, rcpt = make_headers(ack, first_id)
    subject = f"RE: {ack['Subject']}" if style == "outlook" else f"Re: {ack['Subject']}"
    raw, _ = citizen_mail("Thanks. It is getting worse, a car got damaged.\n\n> quoted ack\n",
                          from_="ANA.PEREZ@example.org" if style == "outlook"
                          else f"Ana Pérez <{CITIZEN}>",
                          to=rcpt, subject=subject, headers=headers)
    code, text = await live.send(raw, rcpt=rcpt)
    assert code == 250, text

    assert [c.id for c in await conversations(live.hub)] == [conversation.id]
    _first, reply = await messages(live.hub)
    assert reply.conversation_id == conversation.id
    assert reply.thread_rule == expected_rule
    assert reply.body == "Thanks. It is getting worse, a car got damaged."
    assert len(await live.outgoing()) == 1  # a continued conversation is not acknowledged again


# -- 3. a stranger quoting someone's reference ---------------------------------------------------


async def test_a_stranger_quoting_a_reference_does_not_join(live: LiveHub) -> None:
    conversation, _first_id, ack = await first_contact(live)
    forged = f"help+{make_reply_token(conversation.id, b'not-our-secret')}@{DOMAIN}"
    for rcpt in (HELP, forged):
        raw, _ = citizen_mail("Please send me the details of this case.",
                              from_=f"Mallory <{STRANGER}>", to=rcpt,
                              subject=f"Re: {ack['Subject']}")
        assert (await live.send(raw, sender=STRANGER, rcpt=rcpt))[0] == 250

    theirs = [m for m in await messages(live.hub) if m.sender == STRANGER]
    assert len(theirs) == 2
    assert all(m.conversation_id != conversation.id and m.thread_rule == "new" for m in theirs)
    async with live.hub.db.read() as session:
        ana_messages = await session.scalar(
            select(func.count()).select_from(Message)
            .where(Message.conversation_id == conversation.id, Message.direction == "inbound"))
    assert ana_messages == 1
    # Nothing of Ana's case went to the stranger: each of their conversations got its own ack.
    to_stranger = [m for m in await live.outgoing() if address(m, "To") == STRANGER]
    assert len(to_stranger) == 2
    assert all(conversation.reference not in str(m) for m in to_stranger)


# -- 4. the full round trip ----------------------------------------------------------------------


async def supervisor_token(hub: Hub) -> str:
    async with hub.db.transaction() as session:
        staff = await add_staff(session, f"chief@{DOMAIN}", name="Chief", role="supervisor")
        return await create_token(session, staff)


async def test_round_trip_citizen_staff_reply_citizen_answer(live: LiveHub) -> None:
    hub = live.hub
    conversation, first_id, ack = await first_contact(live)
    token = await supervisor_token(hub)
    async with TestClient(TestServer(create_app(hub))) as client:
        response = await client.post(
            f"/api/v1/conversations/{conversation.id}/replies",
            headers={"Authorization": f"Bearer {token}"},
            json={"body": "Thank you, Ms Pérez. A crew will fill the pothole on Thursday."})
        assert response.status == 202, await response.text()
        reply_id = (await response.json())["message_id"]

    _ack, reply = await live.outgoing()
    reply_token = make_reply_token(conversation.id, hub.reply_secret)
    assert str(reply["From"]) == FROM_HEADER
    assert address(reply, "To") == CITIZEN
    assert bare(reply["In-Reply-To"]) == first_id
    references = [bare(r) for r in str(reply["References"]).split()]
    assert references[0] == first_id and bare(ack["Message-ID"]) in references
    assert address(reply, "Reply-To") == f"help+{reply_token}@{DOMAIN}"
    assert bare(reply["Message-ID"]).startswith(f"{reply_token}.")
    assert f"[#{conversation.reference}]" in str(reply["Subject"])
    assert reply["Auto-Submitted"] is None  # a person wrote this one
    assert "fill the pothole on Thursday" in text_of(reply)
    async with hub.db.read() as session:
        sent = await session.get_one(Message, reply_id)
    assert sent.delivery_status == "sent" and sent.thread_key == bare(reply["Message-ID"])

    # The citizen's client answers that very mail: to its Reply-To, threaded on its Message-ID.
    answer, answer_id = citizen_mail(
        "Thursday is fine, thank you!\n\nOn Tue, City Hall wrote:\n> A crew will fill it\n",
        to=address(reply, "Reply-To"), subject=f"Re: {reply['Subject']}",
        headers={"In-Reply-To": str(reply["Message-ID"]),
                 "References": f"{reply['References']} {reply['Message-ID']}"})
    code, text = await live.send(answer, rcpt=address(reply, "Reply-To"))
    assert code == 250, text
    assert [c.id for c in await conversations(hub)] == [conversation.id]
    last = (await messages(hub))[-1]
    assert (last.conversation_id, last.thread_rule, last.thread_key) == (
        conversation.id, "references", answer_id)
    assert last.body == "Thursday is fine, thank you!"
    assert len(await live.outgoing()) == 2


# -- 5. an out-of-office answering our acknowledgment --------------------------------------------


def exchange_out_of_office(ack: EmailMessage) -> tuple[str, dict[str, str], str]:
    """Exchange/Outlook: threaded on our mail, RFC 3834 and Microsoft headers, to the Reply-To."""
    return (f"Automatic reply: {ack['Subject']}",
            {"In-Reply-To": str(ack["Message-ID"]), "References": str(ack["Message-ID"]),
             "Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
            address(ack, "Reply-To"))


def vacation_out_of_office(ack: EmailMessage) -> tuple[str, dict[str, str], str]:
    """The old vacation(1) style: no thread headers at all, so it opens a conversation."""
    return "Out of office", {"Precedence": "junk"}, HELP


@pytest.mark.parametrize("style", [exchange_out_of_office, vacation_out_of_office],
                         ids=["exchange", "vacation"])
async def test_out_of_office_gets_no_second_acknowledgment(
        live: LiveHub, style: Callable[[EmailMessage], tuple[str, dict[str, str], str]]) -> None:
    conversation, _first_id, ack = await first_contact(live)
    subject, headers, rcpt = style(ack)
    raw, _ = citizen_mail("I am out of the office until Monday, 10 March.", to=rcpt,
                          subject=subject, headers=headers)
    assert (await live.send(raw, rcpt=rcpt))[0] == 250
    await sweeper_rounds(live.hub)

    assert len(await live.outgoing()) == 1
    auto = (await messages(live.hub))[-1]
    assert auto.automatic and auto.meta.get("automatic_reasons")
    assert auto.body.startswith("I am out of the office")
    if style is exchange_out_of_office:
        assert auto.conversation_id == conversation.id
    assert await count(live.hub, OutboxItem) == 1


# -- 6. a bounce of one of our messages ----------------------------------------------------------


BOUNCE_FILE = CORPUS / "sisimai-set-of-emails" / "bsd" / "lhost-postfix-03.eml"
BOUNCED_ORIGINAL_ID = b"20140701000000.000000000000@e1.example.ne.jp"


async def test_a_bounce_marks_our_message_bounced(live: LiveHub) -> None:
    hub = live.hub
    conversation, _first_id, ack = await first_contact(live)
    (outbound,) = await messages(hub, "outbound")
    ours = bare(ack["Message-ID"])
    assert outbound.thread_key == ours
    bounce = BOUNCE_FILE.read_bytes()
    assert bounce.count(BOUNCED_ORIGINAL_ID) == 1  # the returned original's own Message-Id
    bounce = bounce.replace(BOUNCED_ORIGINAL_ID, ours.encode())

    code, text = await live.send(bounce, sender="", rcpt=HELP)  # MAIL FROM:<>, as bounces are
    assert code == 250, text

    assert [c.id for c in await conversations(hub)] == [conversation.id]
    async with hub.db.read() as session:
        marked = await session.get_one(Message, outbound.id)
        events = list(await session.scalars(
            select(DeliveryEvent.status).where(DeliveryEvent.message_id == outbound.id)))
    assert marked.delivery_status == "bounced"
    assert "550 Unknown user kijitora@example.net" in (marked.delivery_error or "")
    assert "bounced" in events
    report = (await messages(hub))[-1]
    assert report.conversation_id == conversation.id and report.automatic
    assert report.thread_rule == "delivery_report"
    assert len(await live.outgoing()) == 1  # nobody acknowledges a bounce


# -- 7. refusals and the 451 retry ---------------------------------------------------------------


async def test_oversized_is_refused_552_and_nothing_stored(live: LiveHub) -> None:
    big, _ = citizen_mail(attachments=[("scan.tif", "image/tiff",
                                        b"\x00" * (HUB_MAX_MESSAGE_BYTES + 10_000))])
    code, text = await live.send(big)
    assert code == 552, text
    # Declared up front with SIZE, it is refused before any data is sent.
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=live.port, timeout=30) as client:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await client.mail(CITIZEN, options=[f"SIZE={HUB_MAX_MESSAGE_BYTES + 1}"])
        assert refused.value.code == 552
    assert await nothing_stored(live.hub)
    assert (await live.send(citizen_mail()[0]))[0] == 250  # and the server goes on


async def test_foreign_domain_is_refused_550_and_nothing_stored(live: LiveHub) -> None:
    raw, _ = citizen_mail(to="someone@elsewhere.example")
    code, text = await live.send(raw, rcpt="someone@elsewhere.example")
    assert code == 550 and "5.1.1" in text
    code, text = await live.send(raw, rcpt=f"help@{DOMAIN}.evil.example")
    assert code == 550 and "5.1.1" in text
    assert await nothing_stored(live.hub)
    assert await live.outgoing() == []


@contextmanager
def database_fails_on_insert(table: str, times: int = 1) -> Iterator[list[str]]:
    """The driver fails the INSERT into `table` (as a dropped connection does); for messages,
    in the middle of the intake's transaction, after the contact and the conversation rows."""
    failed: list[str] = []
    prefix = f"INSERT INTO {table.upper()} "

    def refuse(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        if len(failed) < times and statement.lstrip().upper().startswith(prefix):
            failed.append(statement)
            raise OperationalError(statement, parameters,
                                   ConnectionResetError("server closed the connection"))

    # On SQLite the spool writes through a plain sqlite3 connection, past SQLAlchemy's events.
    insert_rows_sqlite = spool_module._insert_rows_sqlite

    def refuse_sqlite(conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> Any:
        if len(failed) < times and table == "inbound_spool":
            failed.append("INSERT INTO inbound_spool")
            conn.execute("INSERT INTO inbound_spool (id) VALUES (NULL)")  # a real error, inside
        return insert_rows_sqlite(conn, rows)

    # On PostgreSQL it writes through its own asyncpg connection, past them too.
    insert_pg = spool_module._PgWriters.insert

    async def refuse_pg(writer: Any, rows: list[dict[str, Any]]) -> Any:
        if len(failed) < times and table == "inbound_spool":
            failed.append("INSERT INTO inbound_spool")
            raise ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return await insert_pg(writer, rows)

    event.listen(Engine, "before_cursor_execute", refuse)
    spool_module._insert_rows_sqlite = refuse_sqlite
    spool_module._PgWriters.insert = refuse_pg  # type: ignore[method-assign]
    try:
        yield failed
    finally:
        event.remove(Engine, "before_cursor_execute", refuse)
        spool_module._insert_rows_sqlite = insert_rows_sqlite
        spool_module._PgWriters.insert = insert_pg  # type: ignore[method-assign]


async def test_database_failure_during_data_451_then_the_resend_is_stored_once(
        live: LiveHub) -> None:
    raw, message_id = citizen_mail()
    with database_fails_on_insert("inbound_spool") as failed:
        code, text = await live.send(raw)
    assert failed, "the failure was not injected"
    assert code == 451 and "4.3.0" in text, text
    assert "server closed" not in text  # nothing of the error goes back to the client
    assert await nothing_stored(live.hub) and await spooled(live.hub) == []

    assert (await live.send(raw))[0] == 250  # the sending server's retry
    code, text = await live.send(raw)  # and a duplicate retry after a lost 250
    assert code == 250 and "already received" in text
    (stored,) = await messages(live.hub)
    assert stored.thread_key == message_id
    assert len(await conversations(live.hub)) == 1
    assert len(await live.outgoing()) == 1  # one acknowledgment, for the stored copy


async def test_a_full_spool_answers_451_busy_and_the_resend_is_stored_once(live: LiveHub) -> None:
    raw, message_id = citizen_mail()
    live.hub.spool.max_backlog = 0  # as if thousands of mails were waiting to be worked
    code, text = await live.send(raw)
    assert code == 451 and "4.3.2" in text, text
    assert await nothing_stored(live.hub) and await spooled(live.hub) == []

    live.hub.spool.max_backlog = 10
    assert (await live.send(raw))[0] == 250  # the sender's retry
    (stored,) = await messages(live.hub)
    assert stored.thread_key == message_id


async def test_250_comes_when_the_spool_committed_and_the_mail_is_worked_behind_it(
        live: LiveHub) -> None:
    await live.hub.spool_worker.stop()  # the test works the spool itself, step by step
    raw, message_id = citizen_mail()
    code, _ = await send_mail(live.port, raw)
    assert code == 250
    (item,) = await spooled(live.hub)
    assert (item.state, item.payload, item.channel) == ("pending", raw, "email")
    assert item.envelope == {"mail_from": CITIZEN, "rcpt_to": [HELP]}
    assert await nothing_stored(live.hub)  # not parsed yet: the 250 waited for one INSERT only

    assert await live.hub.spool_worker.drain() == 1
    (stored,) = await messages(live.hub)
    assert stored.thread_key == message_id and stored.raw == raw
    assert stored.received_at == item.received_at  # when the SMTP server took it
    (item,) = await spooled(live.hub)
    assert (item.state, item.payload, item.message_id) == ("done", None, stored.id)
    assert len(await live.outgoing()) == 1


async def test_database_failure_behind_the_250_is_worked_again_and_stored_once(
        live: LiveHub) -> None:
    await live.hub.spool_worker.stop()
    raw, message_id = citizen_mail()
    with database_fails_on_insert("messages", times=100) as failed:
        code, _ = await live.send(raw)  # answered, then worked: the INSERT fails, rolled back
    assert failed and code == 250
    assert await nothing_stored(live.hub)
    (item,) = await spooled(live.hub)
    assert (item.state, item.attempts, item.payload) == ("pending", 0, raw)

    assert await live.hub.spool_worker.drain() == 1  # the database is back
    (stored,) = await messages(live.hub)
    assert stored.thread_key == message_id
    assert len(await conversations(live.hub)) == 1
    assert len(await live.outgoing()) == 1


async def test_mail_left_in_the_spool_by_a_stop_is_worked_at_the_next_start(
        live: LiveHub) -> None:
    await live.hub.spool_worker.stop()
    raw, message_id = citizen_mail()
    assert (await send_mail(live.port, raw))[0] == 250
    await live.hub.stop()  # as a crash would: the mail is only in the spool

    hub = Hub(live.hub.settings)
    await hub.start()
    try:
        for _ in range(200):  # the worker runs on its own now; wait for it (at most 10 s)
            if (await spooled(hub))[0].state == "done":
                break
            await asyncio.sleep(0.05)
        (stored,) = await messages(hub)
        assert stored.thread_key == message_id
    finally:
        await hub.stop()


# -- 8. the whole corpus -------------------------------------------------------------------------


def envelope_sender(mail: CorpusMail) -> str:
    return "" if mail.bounce else "citizen@example.org"


def repeated_keys(hub: Hub, corpus: list[CorpusMail]) -> int:
    """How many corpus mails repeat the dedupe key of an earlier one."""
    limits = EmailLimits.from_settings(hub.settings.smtp)
    keys = [parse_email(m.raw, mail_from=envelope_sender(m), rcpt_to=[HELP], limits=limits,
                        reply_secret=hub.reply_secret).provider_id for m in corpus]
    return len(keys) - len(set(keys))


# Refusals we chose, by reply code (anything else, 451 included, is a bug to fix).
DELIBERATE = {552: "larger than max_message_bytes", 550: "no recipient of ours"}


@pytest.mark.slow_e2e
async def test_every_corpus_mail_against_the_real_hub(live: LiveHub,
                                                      corpus: list[CorpusMail]) -> None:
    outcomes: Counter[str] = Counter()
    refused: dict[str, str] = {}
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=live.port, timeout=60) as client:
        for mail in corpus:
            try:
                _errors, response = await client.sendmail(envelope_sender(mail), [HELP],
                                                          mail.raw)
            except aiosmtplib.SMTPResponseException as exc:
                assert exc.code in DELIBERATE, f"{mail.name}: {exc.code} {exc.message}"
                outcomes[f"{exc.code} refused ({DELIBERATE[exc.code]})"] += 1
                refused[mail.name] = f"{exc.code} {exc.message}"
                await client.rset()
                continue
            duplicate = "already received" in response
            outcomes["250 resent bytes" if duplicate else "250 spooled"] += 1
    await live.hub.spool_worker.drain()
    await live.hub.jobs.drain()

    stored = await count(live.hub, Message)  # every row: inbound, acknowledgments
    inbound = len(await messages(live.hub))
    flagged = sum("malformed" in m.flags for m in await messages(live.hub))
    automatic = sum(m.automatic for m in await messages(live.hub))
    print(f"\ncorpus against the real hub on {live.hub.db.dialect} ({len(corpus)} mails): "
          f"{dict(sorted(outcomes.items()))}; inbound rows {inbound} (malformed {flagged}, "
          f"automatic {automatic}), all message rows {stored}, acknowledgments sent "
          f"{len(live.relay.handler.received)}; refused: {refused}")
    assert sum(outcomes.values()) == len(corpus)
    items = await spooled(live.hub)
    assert len(items) == outcomes["250 spooled"]  # every 250 was a commit (or a resend)
    assert {item.state for item in items} == {"done"}  # and was worked
    # The intake dedupes again on (Message-ID, sender): the corpus reuses fixtures.
    assert inbound == len(corpus) - repeated_keys(live.hub, corpus)
    assert {item.message_id for item in items} <= {m.id for m in await messages(live.hub)}
    async with live.hub.db.read() as session:
        rows = await session.execute(
            select(OutboxItem.state, func.count()).group_by(OutboxItem.state))
        states = {state: number for state, number in rows}
        without_raw = await session.scalar(select(func.count()).select_from(Message).where(
            Message.direction == "inbound", Message.raw.is_(None)))
    print(f"outbox after the corpus: {states}")
    assert without_raw == 0
    assert set(states) <= {"sent"}  # every acknowledgment went out
    assert inbound > 700

    # The server is still fine: a normal mail gets 250 and is stored.
    raw, message_id = citizen_mail("After the corpus: the street light is out.")
    assert (await live.send(raw))[0] == 250
    assert (await messages(live.hub))[-1].thread_key == message_id
