"""Staff notifications on both databases: a rule's `notify = { email = ... }` queues an internal
email through the outbox (never to the citizen, never threaded back into the conversation) and,
for a staff member, a `staff.notify` event and a line in their workspace; a muted queue stops
both for that person. A `notify` inside an escalation step (an SLA timer firing) reaches staff
the same way."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from hub.app import Hub
from hub.events import Event
from hub.model import utcnow
from hub.staff import find_staff
from hub.storage.tables import Message, OutboxItem, QueueMute
from tests.support.adapter import inbound
from tests.unit.routing.conftest import write_rules
from tests.web.staff.desk import AGENT, Desk, sign_in

LEAD = "lead@city.example"  # not a staff member: an email only
CITIZEN = "bea@example.org"
RULES = {"flood.toml": """
    [[rule]]
    id = "flood"
    phase = "route"
    order = 1
    when.text.contains = "flooded"
    then.queue = "roads"
    then.notify = [
      { email = "agent@city.example", text = "A flood was reported" },
      { email = "lead@city.example", text = "A flood was reported" },
    ]
    """, "sla.toml": """
    [[rule]]
    id = "flood-sla"
    phase = "timers"
    order = 1
    when.queue = "roads"
    then.escalate = [{ name = "nudge", after = "1h", notify = NUDGE }]
    """.replace("NUDGE", '{ email = "agent@city.example", '
                         'text = "Still no answer on {{ reference }}" }')}


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  tmp_path: Path) -> dict[str, dict[str, object]]:
    rules = write_rules(tmp_path / "rules", RULES)
    settings_data["routing"] = {"rules_dir": str(rules), "watch": False}
    return settings_data


async def _flood(hub: Hub) -> tuple[int, list[Event]]:
    """A citizen's email the rule notifies about; the conversation and the events it made."""
    events = hub.events.subscribe()
    try:
        accepted = await hub.intake.accept(inbound(CITIZEN, "The tunnel is flooded",
                                                   channel="email", subject="Flood"))
        await hub.jobs.drain()
    finally:
        hub.events.unsubscribe(events)
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    return accepted.conversation_id, [e for e in seen if e.kind == "staff.notify"]


async def _notifications(client: TestClient) -> str:
    """The sidebar's notification area of the workspace."""
    page = await (await client.get("/staff/")).text()
    return page[page.index("<h2>Notifications</h2>"):page.index("</nav>")]


async def _agent_id(hub: Hub) -> int:
    async with hub.db.read() as session:
        agent = await find_staff(session, AGENT)
    assert agent is not None
    return agent.id


async def test_a_rule_notify_emails_staff_and_reaches_their_workspace(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    conv, events = await _flood(hub)
    assert [(e.conversation_id, e.queue, e.data["staff_id"]) for e in events] == [
        (conv, "roads", await _agent_id(hub))]  # the lead is no staff member: email only
    sent = {m.to: m for m in hub.adapters.get("email").sent}
    assert set(sent) == {AGENT, LEAD}  # nothing to the citizen
    for mail in sent.values():
        assert mail.body.startswith("A flood was reported")
        assert mail.reply_token is None and mail.reference == "" and mail.in_reply_to is None
        assert mail.references == () and mail.conversation_id == conv
    async with hub.db.read() as session:
        kinds = set(await session.scalars(select(Message.direction).where(
            Message.conversation_id == conv, Message.recipient.in_([AGENT, LEAD]))))
        assert kinds == {"note"}  # the citizen's pages list only inbound and outbound
    await sign_in(client)
    notes = await _notifications(client)
    assert f'href="/staff/conversations/{conv}"' in notes and "A flood was reported" in notes


async def test_a_muted_queue_is_neither_emailed_nor_shown(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    token = await sign_in(client)
    refused = await client.post("/staff/queues/roads/mute", data={"muted": "1", "csrf": "x"},
                                allow_redirects=False)
    assert refused.status == 403
    elsewhere = await client.post("/staff/queues/taxes/mute", data={"muted": "1",
                                                                    "csrf": token},
                                  allow_redirects=False)
    assert elsewhere.status == 404  # not one of the agent's queues
    muted = await client.post("/staff/queues/roads/mute", data={"muted": "1", "csrf": token},
                              allow_redirects=False)
    assert muted.status == 303
    conv, events = await _flood(hub)
    assert events == [] and [m.to for m in hub.adapters.get("email").sent] == [LEAD]
    page = await (await client.get("/staff/")).text()
    assert "Unmute notifications" in page and "No notifications." in await _notifications(client)
    await client.post("/staff/queues/roads/mute", data={"muted": "0", "csrf": token})
    async with hub.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(QueueMute)) == 0
        assert await session.scalar(select(func.count()).select_from(OutboxItem)) == 1
    # Unmuted: the next notification reaches the agent again (and the muted one stays unsent).
    again, events = await _flood(hub)
    assert [e.conversation_id for e in events] == [again]
    assert sorted(m.to for m in hub.adapters.get("email").sent) == [AGENT, LEAD, LEAD]
    notes = await _notifications(client)
    assert f"/staff/conversations/{again}\"" in notes and f"/conversations/{conv}\"" not in notes
    assert "Mute notifications" in await (await client.get("/staff/")).text()



async def test_an_escalation_steps_notify_reaches_staff_like_a_rules(
        client: TestClient, desk: Desk, hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers import maintenance

    conv, _ = await _flood(hub)
    email = hub.adapters.get("email")
    before = len(email.sent)
    events = hub.events.subscribe()
    assert await maintenance.fire_timers(hub) == 0  # not due yet
    later = utcnow() + timedelta(days=7)  # "1h" is business time: a week covers any calendar
    monkeypatch.setattr(maintenance, "utcnow", lambda: later)
    assert await maintenance.fire_timers(hub) == 1
    await hub.jobs.drain()
    hub.events.unsubscribe(events)
    nudges = email.sent[before:]
    assert [m.to for m in nudges] == [AGENT]
    assert nudges[0].body.startswith("Still no answer on ") and nudges[0].reply_token is None
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    assert [(e.kind, e.conversation_id, e.data["staff_id"]) for e in seen
            if e.kind == "staff.notify"] == [("staff.notify", conv, await _agent_id(hub))]
    await sign_in(client)
    assert "Still no answer on" in await _notifications(client)
