"""Automatic mail as a city's first day met it, with the shipped rules and a real relay, on both
databases: out of hours a new citizen gets one automatic mail (the acknowledgment carrying the
after-hours text), greeted by name, its subject with one reference and no "Re:"; an
out-of-office reply is kept but reopens nothing and starts no SLA clock."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from hub.app import Hub
from hub.auth import create_token
from hub.staff import add_staff
from hub.storage.tables import Conversation, ConversationTimer, Message
from hub.web.app import create_app

from .conftest import CITIZEN, Relay, arrive, citizen_mail, parse_captured

SATURDAY_NIGHT = datetime.fromisoformat("2025-03-08T23:00:00-05:00")
TUESDAY_MORNING = datetime.fromisoformat("2025-03-04T10:00:00-05:00")


async def sent(hub: Hub, relay: Relay) -> list[EmailMessage]:
    await hub.jobs.drain()
    return [parse_captured(envelope) for envelope in relay.handler.received]


async def test_out_of_hours_a_new_citizen_gets_one_automatic_mail(city: Hub, relay: Relay) -> None:
    raw, _ = citizen_mail("There is a deep pothole in front of number 12.")
    await arrive(city, raw, SATURDAY_NIGHT)
    (mail,) = await sent(city, relay)
    async with city.db.read() as session:
        (conversation,) = await session.scalars(select(Conversation))
    reference = conversation.reference
    subject = str(mail["Subject"])
    assert subject.count(reference) == 1 and not subject.lower().startswith("re:")
    assert mail["Auto-Submitted"] == "auto-replied"
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert text.startswith("Hello Ana Pérez,")
    assert "has the reference" in text and "closed at the moment" in text
    assert text.count("Hello") == 1 and text.count("City Hall\n") == 1


async def test_in_office_hours_the_acknowledgment_alone(city: Hub, relay: Relay) -> None:
    raw, _ = citizen_mail("There is a deep pothole in front of number 12.")
    await arrive(city, raw, TUESDAY_MORNING)
    (mail,) = await sent(city, relay)
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert text.startswith("Hello Ana Pérez,") and "closed" not in text


async def test_spanish_out_of_hours_is_one_mail_in_spanish(city: Hub, relay: Relay) -> None:
    raw, _ = citizen_mail("Buenas noches, hay un bache muy peligroso delante de mi casa.",
                          subject="Bache", from_=f"María López <{CITIZEN}>")
    await arrive(city, raw, SATURDAY_NIGHT)
    (mail,) = await sent(city, relay)
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert text.startswith("Hola María López:") and "cerrado en este momento" in text


async def test_an_out_of_office_reply_reopens_nothing_and_starts_no_clock(
        city: Hub, relay: Relay) -> None:
    raw, message_id = citizen_mail("The street light on Elm St has been out for a week.")
    await arrive(city, raw, TUESDAY_MORNING)
    async with city.db.transaction() as session:
        (conversation,) = await session.scalars(select(Conversation))
        conversation.status = "resolved"
        conversation.resolved_at = TUESDAY_MORNING
        for timer in await session.scalars(select(ConversationTimer)):
            timer.state = "cancelled"
    away, _ = citizen_mail("I am out of the office until Monday.", subject="Automatic reply",
                           headers={"Auto-Submitted": "auto-replied",
                                    "In-Reply-To": f"<{message_id}>"})
    await arrive(city, away, TUESDAY_MORNING.replace(hour=11))
    async with city.db.read() as session:
        (conversation,) = await session.scalars(select(Conversation))
        timers = list(await session.scalars(select(ConversationTimer).where(
            ConversationTimer.state == "pending")))
        messages = list(await session.scalars(select(Message).where(
            Message.direction == "inbound")))
    assert len(messages) == 2 and messages[1].automatic
    assert messages[1].conversation_id == conversation.id
    assert conversation.status == "resolved" and timers == []


async def test_a_file_over_the_limit_is_shown_to_staff_and_the_citizen_is_told(
        city: Hub, relay: Relay) -> None:
    big = b"%PDF-1.4\n" + b"0" * 600_000  # the hub keeps files up to 500,000 bytes
    raw, _ = citizen_mail("Here is the plan of the damaged road.",
                          attachments=[("road-plan.pdf", "application/pdf", big),
                                       ("photo.png", "image/png", b"\x89PNG small")])
    accepted = await arrive(city, raw, TUESDAY_MORNING)
    (mail,) = await sent(city, relay)
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "We could not accept these files:" in text
    assert "- road-plan.pdf (0.6 MB): larger than 0.5 MB" in text and "photo.png" not in text

    async with city.db.transaction() as session:
        staff = await add_staff(session, "sup@city.example", name="Sup", role="supervisor")
        token = await create_token(session, staff)
    async with TestClient(TestServer(create_app(city))) as client:
        detail = await (await client.get(f"/api/v1/conversations/{accepted.conversation_id}",
                                         headers={"Authorization": f"Bearer {token}"})).json()
    (message,) = [m for m in detail["messages"] if m["direction"] == "inbound"]
    assert message["dropped_attachments"] == [{"filename": "road-plan.pdf", "size": len(big),
                                               "content_type": "application/pdf",
                                               "reason": "attachment_too_large"}]
    assert "attachment_too_large" in message["flags"]
    assert [a["filename"] for a in message["attachments"]] == ["photo.png"]
