"""The contact panel over HTTP: name, identities with their opt-out state, the contact's other
conversations (only those the viewer may see), and the merge of two contacts: supervisors only,
CSRF-protected, audited (hub.contacts.merge_contacts)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from hub.app import Hub
from hub.contacts import merge_contacts
from hub.service import Invalid, NotFound
from hub.staff import find_staff
from hub.storage.tables import AuditEntry, Contact, Conversation, Identity
from tests.support.adapter import inbound
from tests.web.staff.desk import ADMIN, AGENT, Desk, sign_in


def _panel(page: str) -> str:
    return page[page.index('id="contact"'):page.index('id="why-heading"')]


async def _second_conversation(hub: Hub, queue: str) -> int:
    """Another conversation of the desk's citizen (same email), in `queue`."""
    accepted = await hub.intake.accept(inbound("ana@example.org", "Also my bin", channel="email",
                                               subject="Missed bin collection"))
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(
            Conversation.id == accepted.conversation_id).values(queue=queue))
    return accepted.conversation_id


async def test_the_panel_shows_identities_opt_outs_and_visible_conversations(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    roads = await _second_conversation(hub, "roads")
    taxes = await _second_conversation(hub, "taxes")
    await sign_in(client)
    panel = _panel(await (await client.get(f"/staff/conversations/{desk.conv}")).text())
    assert "Ana Citizen" in panel and f"contact number {desk.contact}" in panel
    assert "ana@example.org: can receive" in panel
    assert "+15550001111: <strong>opted out</strong>" in panel
    assert f'href="/staff/conversations/{roads}"' in panel
    assert f'href="/staff/conversations/{taxes}"' not in panel  # another queue's
    assert f'href="/staff/conversations/{desk.conv}"' not in panel  # this one
    assert "merge-contact" not in panel  # agents do not merge
    client.session.cookie_jar.clear()
    await sign_in(client, ADMIN)
    panel = _panel(await (await client.get(f"/staff/conversations/{desk.conv}")).text())
    assert f'href="/staff/conversations/{taxes}"' in panel and "merge-contact" in panel


async def test_an_agent_sees_no_contact_of_another_queue_and_cannot_merge(
        client: TestClient, desk: Desk) -> None:
    token = await sign_in(client)
    assert (await client.get(f"/staff/conversations/{desk.outsider_conv}")).status == 404
    merged = await client.post(f"/staff/conversations/{desk.conv}/merge-contact",
                               data={"other": "2", "csrf": token})
    assert merged.status == 404


async def test_a_supervisor_merges_a_contact_into_this_one(client: TestClient, desk: Desk,
                                                           hub: Hub) -> None:
    async with hub.db.read() as session:
        other = await session.scalar(select(Conversation.contact_id).where(
            Conversation.id == desk.outsider_conv))
    assert other is not None and other != desk.contact
    token = await sign_in(client, ADMIN)
    url = f"/staff/conversations/{desk.conv}/merge-contact"
    assert (await client.post(url, data={"other": str(other)})).status == 403  # no CSRF
    itself = await client.post(url, data={"other": str(desk.contact), "csrf": token})
    assert itself.status == 422 and "cannot be merged into itself" in await itself.text()
    missing = await client.post(url, data={"other": "999999", "csrf": token})
    assert missing.status == 422 and "no contact number 999999" in await missing.text()
    done = await client.post(url, data={"other": str(other), "csrf": token},
                             allow_redirects=False)
    assert done.status == 303 and "done=merge" in done.headers["Location"]
    async with hub.db.read() as session:
        assert await session.get(Contact, other) is None
        owners = set(await session.scalars(select(Identity.contact_id)))
        moved = await session.scalar(select(Conversation.contact_id).where(
            Conversation.id == desk.outsider_conv))
        audit = await session.scalar(select(AuditEntry).where(
            AuditEntry.action == "contact.merge"))
    assert owners == {desk.contact} and moved == desk.contact
    assert audit is not None and audit.actor == ADMIN and audit.target_id == str(desk.contact)
    assert audit.detail == {"merged": other, "conversations": [desk.outsider_conv]}
    panel = _panel(await (await client.get(f"/staff/conversations/{desk.conv}")).text())
    assert "+15550009999: can receive" in panel
    assert f'href="/staff/conversations/{desk.outsider_conv}"' in panel


async def test_merge_contacts_refuses_agents_and_unknown_contacts(desk: Desk, hub: Hub) -> None:
    async with hub.db.read() as session:
        agent, admin = await find_staff(session, AGENT), await find_staff(session, ADMIN)
    assert agent is not None and admin is not None
    events: list[object] = []
    for actor, keep, other, error in ((agent, desk.contact, desk.contact + 1, NotFound),
                                      (admin, desk.contact, desk.contact, Invalid),
                                      (admin, desk.contact, 999_999, NotFound)):
        try:
            await merge_contacts(hub.db, actor, keep, other, publish=events.append)
        except error:
            continue
        raise AssertionError(f"{actor.email} merged {other} into {keep}")
    assert events == []
