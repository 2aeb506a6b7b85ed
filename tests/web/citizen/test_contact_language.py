"""The citizen's language follows the contact across channels (SQLite and PostgreSQL): a
request filed on the web form in Spanish stores `es` on the contact; a later SMS from the phone
given on that form, too short for any guess, opens a conversation held in Spanish, which the
shipped rule `lang.spanish` (`when.language = "es"`) routes to the Spanish desk, and whose
resolution notice and survey invitation go out by SMS in Spanish. A stranger's SMS stays in the
default language."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from hub.app import Hub
from hub.storage.tables import Contact, Conversation
from tests.support.adapter import inbound
from tests.web.citizen.test_survey import delivered, request_of, set_status, staff_token

PHONE = "+14155550123"


async def conversation(hub: Hub, conversation_id: int) -> Conversation:
    async with hub.db.read() as session:
        return await session.get_one(Conversation, conversation_id)


async def test_a_later_sms_is_held_routed_and_told_in_the_contacts_language(
        client: TestClient, hub: Hub) -> None:
    _, form_conv = await request_of(client, hub, "es", phone=PHONE)
    async with hub.db.read() as session:
        language = await session.scalar(select(Contact.language).join(
            Conversation, Conversation.contact_id == Contact.id).where(
            Conversation.id == form_conv))
    assert language == "es"
    sms = await hub.intake.accept(inbound(sender=PHONE, text="Hola?"))
    held = await conversation(hub, sms.conversation_id)
    assert sms.conversation_id != form_conv
    assert held.channel == "sms" and held.language == "es"
    assert held.queue == "spanish"  # routed on the contact's language: "Hola?" says nothing
    assert held.contact_id == (await conversation(hub, form_conv)).contact_id
    await set_status(client, await staff_token(hub), sms.conversation_id, "resolved")
    bodies = [m.body for m in await delivered(hub, "sms")]
    notice = [b for b in bodies if "/track/" in b]
    assert len(notice) == 1, bodies
    assert "ha sido resuelta" in notice[0] and "Díganoslo en un minuto" in notice[0]
    assert "/survey/" in notice[0]


async def test_a_strangers_sms_stays_in_the_default_language(client: TestClient,
                                                             hub: Hub) -> None:
    sms = await hub.intake.accept(inbound(sender="+14155550999", text="Hola?"))
    held = await conversation(hub, sms.conversation_id)
    assert held.language is None and held.queue != "spanish"
    await set_status(client, await staff_token(hub), sms.conversation_id, "resolved")
    notice = [m.body for m in await delivered(hub, "sms") if "/track/" in m.body]
    assert len(notice) == 1 and "has been resolved" in notice[0]
