"""SLA on the workspace over HTTP, on both databases: the sidebar's "SLA at risk" count per
queue, the `?view=at_risk` list, and the conversation page's pending timers next to the
"why is this here?" trace."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from hub.app import Hub
from hub.model import utcnow
from hub.staff import find_staff
from hub.storage.tables import Conversation, ConversationTimer
from hub.web.staff.queries import queue_counts
from tests.support.adapter import inbound
from tests.web.staff.desk import AGENT, Desk, sign_in


async def _timer(hub: Hub, conv: int, step: str, due: datetime, state: str = "pending",
                 **actions: object) -> None:
    async with hub.db.transaction() as session:
        session.add(ConversationTimer(conversation_id=conv, rule_id="lights-to-roads", step=step,
                                      due_at=due, actions=actions, state=state))


async def _risk_counts(client: TestClient) -> dict[str, int]:
    page = await (await client.get("/staff/")).text()
    found = re.findall(r'data-sla-risk="([^"]+)">(\d+) SLA at risk', page)
    return {queue: int(n) for queue, n in found}


async def _roads_conversation(hub: Hub, text: str) -> int:
    accepted = await hub.intake.accept(inbound("+15550004444", text))
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(
            Conversation.id == accepted.conversation_id).values(queue="roads"))
    return accepted.conversation_id


async def test_sidebar_counts_open_conversations_with_a_timer_due_soon_or_overdue(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    now = utcnow()
    assert await _risk_counts(client) == {"roads": 0}
    await _timer(hub, desk.conv, "later", now + timedelta(hours=5))
    await _timer(hub, desk.conv, "done", now - timedelta(hours=1), state="fired")
    await _timer(hub, desk.outsider_conv, "taxes-late", now - timedelta(minutes=5))
    assert await _risk_counts(client) == {"roads": 0}
    await _timer(hub, desk.conv, "soon", now + timedelta(minutes=30))
    other = await _roads_conversation(hub, "Pothole on Main St")
    await _timer(hub, other, "overdue", now - timedelta(minutes=10))
    await _timer(hub, other, "overdue-too", now - timedelta(minutes=20))  # one conversation
    assert await _risk_counts(client) == {"roads": 2}
    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(Conversation.id == other)
                              .values(status="resolved"))
    assert await _risk_counts(client) == {"roads": 1}


async def test_the_horizon_is_the_callers_choice(desk: Desk, hub: Hub) -> None:
    now = utcnow()
    await _timer(hub, desk.conv, "later", now + timedelta(hours=5))
    async with hub.db.read() as session:
        agent = await find_staff(session, AGENT)
        assert agent is not None
        near = await queue_counts(session, agent, now + timedelta(minutes=60))
        far = await queue_counts(session, agent, now + timedelta(hours=6))
        unasked = await queue_counts(session, agent)
    assert [(q.name, q.open, q.at_risk) for q in near] == [("roads", 1, 0)]
    assert [(q.name, q.at_risk) for q in far] == [("roads", 1)]
    assert [q.at_risk for q in unasked] == [0]


async def test_the_at_risk_view_lists_only_conversations_at_risk(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    calm = await _roads_conversation(hub, "Pothole on Main St")
    await _timer(hub, calm, "later", utcnow() + timedelta(hours=5))
    await _timer(hub, desk.conv, "soon", utcnow() + timedelta(minutes=30))
    await _timer(hub, desk.outsider_conv, "taxes-late", utcnow() - timedelta(minutes=5))
    page = await (await client.get("/staff/?view=at_risk")).text()
    assert "<h1>SLA at risk</h1>" in page
    assert f"/staff/conversations/{desk.conv}\"" in page
    assert f"/staff/conversations/{calm}\"" not in page
    assert f"/staff/conversations/{desk.outsider_conv}\"" not in page
    in_taxes = await (await client.get("/staff/?view=at_risk&queue=taxes")).text()
    assert f"/staff/conversations/{desk.conv}\"" not in in_taxes
    everything = await (await client.get("/staff/?view=open")).text()
    assert f"/staff/conversations/{calm}\"" in everything


async def test_the_conversation_shows_its_pending_timers_beside_the_trace(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    assert "No SLA timer is pending." in page
    now = utcnow()
    await _timer(hub, desk.conv, "to-supervisors", now + timedelta(hours=5),
                 queue="supervisors", priority="high")
    await _timer(hub, desk.conv, "first-nudge", now - timedelta(minutes=3), tags_add=["late"])
    await _timer(hub, desk.conv, "already", now - timedelta(hours=2), state="fired")
    page = await (await client.get(f"/staff/conversations/{desk.conv}")).text()
    why = page[page.index("Why is this here?"):]
    sla = why[why.index("SLA timers"):]
    assert "already" not in sla and "lights-to-roads" in sla
    assert sla.index("first-nudge") < sla.index("to-supervisors")  # soonest first
    nudge = sla[sla.index("first-nudge"):sla.index("to-supervisors")]
    assert "<strong>overdue</strong>" in nudge and "tags_add: [&#34;late&#34;]" in nudge
    later = sla[sla.index("to-supervisors"):]
    due = (now + timedelta(hours=5)).strftime("%Y-%m-%d %H:%M")
    assert f"{due} UTC" in later and "overdue" not in later.split("</tr>")[0]
    assert "queue: &#34;supervisors&#34;" in later and "priority: &#34;high&#34;" in later
