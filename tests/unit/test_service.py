"""The conversation service on both databases, without HTTP: visibility (agents only in their
queues, supervisors everywhere) and the rules of claim, assign, transfer, status, note and reply,
with their audit rows, outbox hand-over and events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from hub import service
from hub.app import Hub
from hub.events import Event
from hub.service import Conflict, ConversationFilter, Invalid, NotFound
from hub.staff import find_staff
from hub.storage.tables import AuditEntry, Conversation, Message, OutboxItem, Staff
from tests.web.world import World, build_world, snapshot


@dataclass
class Heard:
    """What the service handed over after its commits."""

    events: list[Event] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)

    def publish(self, event: Event) -> None:
        self.events.append(event)

    def submit(self, outbox_ids: Sequence[int]) -> None:
        self.outbox_ids.extend(outbox_ids)


@pytest.fixture
async def world(hub: Hub) -> World:
    return await build_world(hub)


async def staff(hub: Hub, who: str) -> Staff:
    """A detached staff row, as the web layer holds its caller."""
    async with hub.db.read() as session:
        row = await find_staff(session, f"{who}@city.example")
        assert row is not None
        session.expunge(row)
    return row


async def conversation(hub: Hub, conversation_id: int) -> Conversation:
    async with hub.db.read() as session:
        return await session.get_one(Conversation, conversation_id)


async def audit_actions(hub: Hub) -> list[tuple[str, str, dict[str, object]]]:
    async with hub.db.read() as session:
        rows = await session.scalars(select(AuditEntry).where(
            AuditEntry.action.like("conversation.%")).order_by(AuditEntry.id))
        return [(r.actor, r.action, r.detail) for r in rows]


# -- visibility -------------------------------------------------------------------------------

async def test_an_agent_sees_only_their_queues(hub: Hub, world: World) -> None:
    outsider, agent, supervisor = [await staff(hub, w) for w in ("outsider", "agent",
                                                                 "supervisor")]
    async with hub.db.read() as session:
        with pytest.raises(NotFound, match="conversation not found"):
            await service.conversation_for(session, outsider, world.conv)
        with pytest.raises(NotFound, match="contact not found"):
            await service.contact_for(session, outsider, world.conv_contact)
        with pytest.raises(NotFound, match="attachment not found"):
            await service.attachment_for(session, outsider, world.attachment)
        assert (await service.conversation_for(session, agent, world.conv)).queue == "roads"
        listed = await service.list_conversations(session, outsider, ConversationFilter(), 10)
        assert [c.id for c in listed] == [world.taxes_conv]
        _, shared = await service.contact_for(session, outsider, world.both_contact)
        assert [c.id for c in shared] == [world.taxes_conv]
        assert [q.name for q in await service.queues_for(session, outsider)] == ["taxes"]
        everything = await service.list_conversations(session, supervisor,
                                                      ConversationFilter(), 10)
        assert {c.id for c in everything} == {world.conv, world.taxes_conv,
                                              world.roads_conv_of_both}
        found = await service.list_conversations(session, supervisor,
                                                 ConversationFilter(text="POTHOLE"), 10)
        assert [c.id for c in found] == [world.conv]


async def test_an_agent_cannot_act_outside_their_queues(hub: Hub, world: World) -> None:
    outsider, heard = await staff(hub, "outsider"), Heard()
    before = await snapshot(hub)
    with pytest.raises(NotFound):
        await service.claim(hub.db, outsider, world.conv, publish=heard.publish)
    with pytest.raises(NotFound):
        await service.note(hub.db, outsider, world.conv, "peek", publish=heard.publish)
    assert await snapshot(hub) == before and heard.events == []


# -- actions ----------------------------------------------------------------------------------

async def test_claim_then_conflict(hub: Hub, world: World) -> None:
    agent, supervisor, heard = await staff(hub, "agent"), await staff(hub, "supervisor"), Heard()
    claimed = await service.claim(hub.db, agent, world.conv, publish=heard.publish)
    assert claimed.assignee_id == agent.id
    await service.claim(hub.db, agent, world.conv, publish=heard.publish)  # no change
    with pytest.raises(Conflict) as refused:
        await service.claim(hub.db, supervisor, world.conv, publish=heard.publish)
    assert refused.value.code == "conflict"
    assert (await conversation(hub, world.conv)).assignee_id == agent.id
    assert await audit_actions(hub) == [("agent@city.example", "conversation.claim",
                                         {"assignee": "agent@city.example"})]
    [event] = heard.events
    assert (event.kind, event.queue, event.data["action"]) == ("conversation.updated", "roads",
                                                               "claim")


async def test_assign_to_a_non_member_is_refused(hub: Hub, world: World) -> None:
    agent, heard = await staff(hub, "agent"), Heard()
    for email, code in [("outsider@city.example", "not_a_member"),
                        ("nobody@city.example", "unknown_staff")]:
        with pytest.raises(Invalid) as refused:
            await service.assign(hub.db, agent, world.conv, email, publish=heard.publish)
        assert refused.value.code == code and refused.value.message.startswith("staff:")
    assert (await conversation(hub, world.conv)).assignee_id is None
    supervisor = await staff(hub, "supervisor")  # supervisors may hold any queue's work
    assigned = await service.assign(hub.db, agent, world.conv, "Supervisor@City.example",
                                    publish=heard.publish)
    assert assigned.assignee_id == supervisor.id
    assert (await service.assign(hub.db, agent, world.conv, None,
                                 publish=heard.publish)).assignee_id is None
    assert [a for _, a, _ in await audit_actions(hub)] == ["conversation.assign"] * 2


async def test_transfer_unassigns_a_non_member(hub: Hub, world: World) -> None:
    agent, heard = await staff(hub, "agent"), Heard()
    await service.claim(hub.db, agent, world.conv, publish=heard.publish)
    with pytest.raises(Invalid) as refused:
        await service.transfer(hub.db, agent, world.conv, "nope", publish=heard.publish)
    assert refused.value.code == "unknown_queue"
    moved = await service.transfer(hub.db, agent, world.conv, "taxes", publish=heard.publish)
    assert (moved.queue, moved.assignee_id) == ("taxes", None)
    stored = await conversation(hub, world.conv)
    assert (stored.queue, stored.assignee_id) == ("taxes", None)
    assert heard.events[-1].queue == "taxes" and heard.events[-1].data["to"] == "taxes"
    with pytest.raises(NotFound):  # out of the agent's sight now
        await service.set_status(hub.db, agent, world.conv, "closed", publish=heard.publish)


async def test_transfer_keeps_an_assignee_who_may_work_the_queue(hub: Hub, world: World) -> None:
    supervisor, heard = await staff(hub, "supervisor"), Heard()
    await service.claim(hub.db, supervisor, world.conv, publish=heard.publish)
    moved = await service.transfer(hub.db, supervisor, world.conv, "taxes",
                                   publish=heard.publish)
    assert moved.assignee_id == supervisor.id


async def test_status_resolved_sets_resolved_at(hub: Hub, world: World) -> None:
    agent, heard = await staff(hub, "agent"), Heard()
    resolved = await service.set_status(hub.db, agent, world.conv, "resolved",
                                        publish=heard.publish)
    assert resolved.status == "resolved" and resolved.resolved_at is not None
    assert (await conversation(hub, world.conv)).resolved_at is not None
    reopened = await service.set_status(hub.db, agent, world.conv, "pending",
                                        publish=heard.publish)
    assert reopened.resolved_at is None
    with pytest.raises(Invalid):
        await service.set_status(hub.db, agent, world.conv, "done", publish=heard.publish)
    assert [d for _, _, d in await audit_actions(hub)] == [
        {"from": "open", "to": "resolved"}, {"from": "resolved", "to": "pending"}]


async def test_a_note_is_internal(hub: Hub, world: World) -> None:
    agent, heard = await staff(hub, "agent"), Heard()
    note = await service.note(hub.db, agent, world.conv, "Called the roads dept",
                              publish=heard.publish)
    async with hub.db.read() as session:
        stored = await session.get_one(Message, note.id)
        outbox = await session.scalar(select(func.count()).select_from(OutboxItem))
    assert (stored.direction, stored.staff_id, stored.body) == ("note", agent.id,
                                                                 "Called the roads dept")
    assert outbox == 0 and heard.outbox_ids == []
    assert [e.data["action"] for e in heard.events] == ["note"]


class Configured(set[str]):
    """Channels that carry any text."""

    def too_long(self, channel: str, body: str) -> str | None:
        return None


async def test_a_reply_is_queued_and_handed_over_after_the_commit(hub: Hub,
                                                                  world: World) -> None:
    agent, heard = await staff(hub, "agent"), Heard()
    message = await service.reply(hub.db, agent, world.conv, "Crew on the way",
                                  channels=Configured({"sms"}), submit_delivery=heard.submit,
                                  publish=heard.publish)
    async with hub.db.read() as session:
        outbox = await session.scalar(select(OutboxItem).where(
            OutboxItem.message_id == message.id))
    assert outbox is not None and heard.outbox_ids == [outbox.id]
    assert [e.kind for e in heard.events] == ["message.outbound", "conversation.updated"]


@pytest.mark.parametrize(("channels", "code"), [({"sms", "email"}, "no_address"),
                                                ({"sms"}, "no_channel")])
async def test_a_reply_that_cannot_be_delivered_is_refused(hub: Hub, world: World,
                                                           channels: set[str],
                                                           code: str) -> None:
    agent, heard = await staff(hub, "agent"), Heard()
    before = await snapshot(hub)
    with pytest.raises(Invalid) as refused:
        await service.reply(hub.db, agent, world.conv, "hi", channel="email",
                            channels=Configured(channels), submit_delivery=heard.submit,
                            publish=heard.publish)
    assert refused.value.code == code and refused.value.message.startswith("channel:")
    assert await snapshot(hub) == before
    assert heard == Heard()


async def test_priority_and_tags_are_audited_and_published(hub: Hub, world: World) -> None:
    agent, heard = await staff(hub, "agent"), Heard()
    with pytest.raises(Invalid) as refused:
        await service.set_priority(hub.db, agent, world.conv, "whenever", publish=heard.publish)
    assert refused.value.code == "unknown_priority"
    await service.set_priority(hub.db, agent, world.conv, "urgent", publish=heard.publish)
    await service.set_priority(hub.db, agent, world.conv, "urgent", publish=heard.publish)
    await service.set_tags(hub.db, agent, world.conv, add=["lamp", " ", "lamp", "elm"],
                           publish=heard.publish)
    tagged = await service.set_tags(hub.db, agent, world.conv, add=["night"], remove=["lamp"],
                                    publish=heard.publish)
    assert tagged.priority == "urgent" and tagged.tags == ["elm", "night"]
    async with hub.db.read() as session:
        found = await service.list_conversations(session, agent, ConversationFilter(
            tag="night", priority="urgent"), 10)
    assert [c.id for c in found] == [world.conv]
    assert [(a, d) for _, a, d in await audit_actions(hub)] == [
        ("conversation.priority", {"from": "normal", "to": "urgent"}),
        ("conversation.tags", {"added": ["lamp", "elm"], "removed": []}),
        ("conversation.tags", {"added": ["night"], "removed": ["lamp"]})]
    assert [e.data["action"] for e in heard.events] == ["priority", "tags", "tags"]
    with pytest.raises(Invalid):
        await service.set_tags(hub.db, agent, world.conv, add=["x" * 65], publish=heard.publish)
