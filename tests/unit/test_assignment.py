"""Assignment strategies from queues.toml acting on `assign = "@strategy"`, on SQLite and
PostgreSQL, through the real intake: round_robin deals a burst of 30 new conversations out
in turn, least_busy evens out the members' open work and respects the queue's capacity, manual
leaves them to be claimed, and a conversation someone holds is never taken away. A queue with
`assign_to = "online"` deals only to members with a live workspace (hub.presence), and to
nobody while none is online."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hub import presence
from hub.app import Hub
from hub.config import Settings
from hub.queues import set_membership
from hub.staff import add_staff
from hub.storage.tables import Conversation, Staff
from tests.support.adapter import RecordingAdapter, inbound
from tests.unit.routing.conftest import write_rules

QUEUES = """
    [[queue]]
    name = "general"
    strategy = "manual"

    [[queue]]
    name = "waste"
    strategy = "round_robin"

    [[queue]]
    name = "roads"
    strategy = "least_busy"
    capacity = {capacity}

    [[queue]]
    name = "parks"
    strategy = "round_robin"
    assign_to = "online"

    [[queue]]
    name = "lights"
    strategy = "least_busy"
    assign_to = "online"
    """
RULES = """
    [[rule]]
    id = "by-word"
    phase = "route"
    order = 1
    when.text.contains = "bin"
    then.queue = "waste"
    then.assign = "@strategy"

    [[rule]]
    id = "roads"
    phase = "route"
    order = 2
    when.text.contains = "pothole"
    then.queue = "roads"
    then.assign = "@strategy"

    [[rule]]
    id = "rest"
    phase = "route"
    order = 3
    when.text.contains = "question"
    then.queue = "general"
    then.assign = "@strategy"

    [[rule]]
    id = "trees"
    phase = "route"
    order = 4
    when.text.contains = "tree"
    then.queue = "parks"
    then.assign = "@strategy"

    [[rule]]
    id = "lamps"
    phase = "route"
    order = 5
    when.text.contains = "lamp"
    then.queue = "lights"
    then.assign = "@strategy"
    """
AGENTS = ("ana@city.example", "ben@city.example", "cho@city.example")


async def strategy_hub(settings_data: dict[str, dict[str, object]], tmp_path: Path,
                       capacity: int) -> Hub:
    rules = write_rules(tmp_path / "rules", {"queues.toml": QUEUES.format(capacity=capacity),
                                             "route.toml": RULES})
    settings_data["routing"] = {**settings_data["routing"], "rules_dir": str(rules)}
    hub = Hub(Settings.model_validate(settings_data), adapters=[RecordingAdapter()])
    await hub.prepare()
    async with hub.db.transaction() as session:
        for email in AGENTS:
            staff = await add_staff(session, email, name=email.split("@")[0], role="agent")
            await set_membership(session, staff, ["general", "waste", "roads", "parks", "lights"])
    return hub


@pytest.fixture
async def hub(settings_data: dict[str, dict[str, object]],
              tmp_path: Path) -> AsyncIterator[Hub]:
    instance = await strategy_hub(settings_data, tmp_path, capacity=15)
    yield instance
    await instance.stop()


async def burst(hub: Hub, text: str, count: int, first: int = 0) -> None:
    """`count` citizens write at once: one intake batch, as a busy morning brings them."""
    await hub.intake.accept_many([inbound(f"+1555200{first + i:04d}", text)
                                  for i in range(count)])


async def assignees(hub: Hub, queue: str) -> Counter[str | None]:
    async with hub.db.read() as session:
        rows = await session.execute(
            select(Staff.email).select_from(Conversation)
            .outerjoin(Staff, Staff.id == Conversation.assignee_id)
            .where(Conversation.queue == queue))
        return Counter(email for (email,) in rows)


async def test_round_robin_deals_thirty_new_conversations_out_in_turn(hub: Hub) -> None:
    await burst(hub, "The bin was not emptied", 30)
    assert await assignees(hub, "waste") == Counter({email: 10 for email in AGENTS})
    async with hub.db.read() as session:
        order = list(await session.scalars(
            select(Staff.email).join(Conversation, Conversation.assignee_id == Staff.id)
            .order_by(Conversation.id)))
    assert order[:6] == [*AGENTS, *AGENTS]
    # The next one, in a later batch, goes on from where the turn stopped.
    await burst(hub, "Another bin forgotten", 1, first=100)
    assert (await assignees(hub, "waste"))[AGENTS[0]] == 11


async def test_least_busy_evens_out_open_work(hub: Hub) -> None:
    await burst(hub, "A pothole here", 7)  # 3, 2, 2 by the tie on the lowest id
    async with hub.db.transaction() as session:  # ana and cho resolve theirs
        for conversation in await session.scalars(
                select(Conversation).join(Staff, Staff.id == Conversation.assignee_id)
                .where(Staff.email.in_([AGENTS[0], AGENTS[2]]))):
            conversation.status = "resolved"
    await burst(hub, "A pothole there", 30, first=100)  # open: ana 0, ben 2, cho 0 before
    async with hub.db.read() as session:
        open_by = Counter((await session.execute(
            select(Staff.email).join(Conversation, Conversation.assignee_id == Staff.id)
            .where(Conversation.status == "open"))).scalars())
    assert sorted(open_by.values()) == [10, 11, 11] and sum(open_by.values()) == 32


async def test_least_busy_stops_at_the_queues_capacity(
        settings_data: dict[str, dict[str, object]], tmp_path: Path) -> None:
    hub = await strategy_hub(settings_data, tmp_path, capacity=4)
    try:
        await burst(hub, "A pothole on 3rd", 15)
        assert await assignees(hub, "roads") == Counter(
            {**{email: 4 for email in AGENTS}, None: 3})
    finally:
        await hub.stop()


async def test_manual_leaves_new_conversations_to_be_claimed(hub: Hub) -> None:
    await burst(hub, "A question about opening hours", 5)
    assert await assignees(hub, "general") == Counter({None: 5})


async def test_a_held_conversation_is_not_dealt_again(hub: Hub) -> None:
    await hub.intake.accept(inbound("+15552009999", "My bin is broken"))
    await hub.intake.accept(inbound("+15552009999", "The bin lid too"))  # same conversation
    assert await assignees(hub, "waste") == Counter({AGENTS[0]: 1})


async def go_online(hub: Hub, *emails: str) -> None:
    async with hub.db.read() as session:
        for staff_id in await session.scalars(select(Staff.id).where(Staff.email.in_(emails))):
            await presence.register(hub, staff_id)


async def test_round_robin_online_deals_only_to_members_with_a_live_workspace(hub: Hub) -> None:
    await go_online(hub, AGENTS[0], AGENTS[2])
    await burst(hub, "A tree fell", 30)
    assert await assignees(hub, "parks") == Counter({AGENTS[0]: 15, AGENTS[2]: 15})
    await go_online(hub, AGENTS[1])  # ben comes in: the turn goes on through him too
    await burst(hub, "Another tree", 3, first=100)
    assert await assignees(hub, "parks") == Counter({AGENTS[0]: 16, AGENTS[1]: 1, AGENTS[2]: 16})
    await burst(hub, "The bin again", 3, first=200)  # assign_to = "all" (the default)
    assert await assignees(hub, "waste") == Counter({email: 1 for email in AGENTS})


async def test_least_busy_online_evens_out_among_those_online(hub: Hub) -> None:
    await go_online(hub, AGENTS[1])
    await burst(hub, "A lamp is out", 4)
    await go_online(hub, AGENTS[2])
    await burst(hub, "A lamp flickers", 26, first=100)
    assert await assignees(hub, "lights") == Counter({AGENTS[1]: 15, AGENTS[2]: 15})


async def test_online_queues_leave_work_unassigned_while_nobody_is_online(hub: Hub) -> None:
    await burst(hub, "A tree and a lamp", 1)  # the tree rule wins
    await burst(hub, "A lamp on 5th", 2, first=100)
    assert await assignees(hub, "parks") == Counter({None: 1})
    assert await assignees(hub, "lights") == Counter({None: 2})
    assert not await presence.staff_online(hub, "parks")
