"""The rule engine against real databases (SQLite and PostgreSQL via the `db_url` fixture):
applying decisions, timers firing once (two sweepers, a restart), cancel on staff reply, replay."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from hub.model import InboundMessage
from hub.routing import RoutingContext
from hub.routing.apply import apply_decision
from hub.routing.loader import load_rules
from hub.routing.replay import replay
from hub.routing.timers import cancel_timers, fire_due_timers
from hub.storage.db import Database
from hub.storage.tables import (
    AuditEntry,
    AutoReplyLog,
    Contact,
    Conversation,
    ConversationTimer,
    Message,
    OutboxItem,
    RoutingDecisionRow,
)
from tests.unit.routing.conftest import ctx, write_rules

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)  # Tuesday, inside the office calendar
RULES = {
    "route.toml": """
        [[rule]]
        id = "roads"
        phase = "route"
        order = 1
        when.text.contains = "pothole"
        then.queue = "roads"

        [[rule]]
        id = "hello"
        phase = "enrich"
        order = 1
        when.new_conversation = true
        then.auto_reply = { template = "hello", once_per = "1d" }
        then.notify = { email = "lead@city.example" }

        [[rule]]
        id = "sla"
        phase = "timers"
        order = 1
        when.queue = "roads"
        then.escalate = [
          { name = "warn", after = "1h", priority = "urgent" },
          { name = "boss", after = "2h", queue = "vip" },
        ]
        """,
}


async def _seed(db: Database, text: str, n: int = 1, at: datetime = NOW) -> list[tuple[int, int]]:
    out = []
    async with db.transaction() as s:
        contact = Contact(name="Jane")
        s.add(contact)
        await s.flush()
        for i in range(n):
            conv = Conversation(
                reference=f"R{contact.id}X{i}",
                contact_id=contact.id,
                channel="email",
                status="open",
                priority="normal",
                tags=[],
                created_at=at,
            )
            s.add(conv)
            await s.flush()
            msg = Message(
                conversation_id=conv.id,
                direction="inbound",
                channel="email",
                provider_id=f"p{contact.id}-{i}",
                sender="jane@example.org",
                body=text,
                subject="Hi",
                created_at=at,
                received_at=at,
            )
            s.add(msg)
            await s.flush()
            out.append((conv.id, msg.id))
    return out


async def _route(db: Database, rs, conv_id: int, msg_id: int, text: str) -> list[int]:
    async with db.transaction() as s:
        conv = await s.get(Conversation, conv_id)
        msg = await s.get(Message, msg_id)
        base = ctx(text, now=NOW)
        c = RoutingContext(
            message=base.message,
            conversation=base.conversation.__class__(
                id=conv.id,
                is_new=True,
                channel="email",
                status="open",
                queue=None,
                priority="normal",
                tags=frozenset(),
                reference=conv.reference,
            ),
            contact_id=conv.contact_id,
            now=NOW,
        )
        return await apply_decision(s, conv, msg, rs.decide(c), now=NOW)


async def test_apply_decision_writes_everything_once(db_url: str, tmp_path: Path) -> None:
    rs = load_rules(write_rules(tmp_path / "r", RULES))
    db = Database(db_url)
    try:
        ((conv_id, msg_id),) = await _seed(db, "pothole")
        outbox = await _route(db, rs, conv_id, msg_id, "pothole")
        assert len(outbox) == 2  # the auto-reply and the notify email to lead@ (an internal note)
        async with db.read() as s:
            conv = await s.get(Conversation, conv_id)
            assert conv.queue == "roads" and conv.auto_replies_sent == 1
            row = await s.scalar(
                select(RoutingDecisionRow).where(RoutingDecisionRow.message_id == msg_id)
            )
            assert row.rules_version == rs.version and row.decision["queue"] == "roads"
            assert any(e.get("rule") == "roads" and e["matched"] for e in row.trace)
            assert await s.scalar(select(func.count()).select_from(AutoReplyLog)) == 1
            assert await s.scalar(select(func.count()).select_from(OutboxItem)) == 2
            notified = await s.scalar(select(Message).where(Message.recipient == "lead@city.example"))
            assert notified.direction == "note" and notified.meta == {"kind": "staff_notify"}
            assert (
                await s.scalar(select(func.count()).where(AuditEntry.action == "rules.notify")) == 1
            )
            steps = {t.step: t.due_at for t in await s.scalars(select(ConversationTimer))}
            assert steps == {"warn": NOW + timedelta(hours=1), "boss": NOW + timedelta(hours=2)}
        # A second unanswered message does not restart the running SLA clock.
        await _route(db, rs, conv_id, msg_id, "pothole")
        async with db.read() as s:
            assert await s.scalar(select(func.count()).select_from(ConversationTimer)) == 2
    finally:
        await db.dispose()


async def test_timers_fire_once_with_two_sweepers_and_after_a_restart(
    db_url: str, tmp_path: Path
) -> None:
    rs = load_rules(write_rules(tmp_path / "r", RULES))
    db = Database(db_url)
    ((conv_id, msg_id),) = await _seed(db, "pothole")
    await _route(db, rs, conv_id, msg_id, "pothole")
    assert await fire_due_timers(db, rs, NOW + timedelta(minutes=59)) == 0
    other = Database(db_url)  # a second hub process sweeping the same database
    try:
        results = await asyncio.gather(
            fire_due_timers(db, rs, NOW + timedelta(minutes=61)),
            fire_due_timers(other, rs, NOW + timedelta(minutes=61)),
        )
        assert sorted(results) == [0, 1]
    finally:
        await other.dispose()
    await db.dispose()
    restarted = Database(db_url)  # timers live in the database: a restart keeps them
    try:
        assert await fire_due_timers(restarted, rs, NOW + timedelta(hours=3)) == 1
        assert await fire_due_timers(restarted, rs, NOW + timedelta(hours=4)) == 0
        async with restarted.read() as s:
            conv = await s.get(Conversation, conv_id)
            assert (conv.priority, conv.queue) == ("urgent", "vip")
            states = sorted(t.state for t in await s.scalars(select(ConversationTimer)))
            assert states == ["fired", "fired"]
            assert (
                await s.scalar(select(func.count()).where(AuditEntry.action == "rules.escalate"))
                == 2
            )
    finally:
        await restarted.dispose()


async def test_staff_reply_cancels_pending_steps(db_url: str, tmp_path: Path) -> None:
    rs = load_rules(write_rules(tmp_path / "r", RULES))
    db = Database(db_url)
    try:
        ((conv_id, msg_id),) = await _seed(db, "pothole")
        await _route(db, rs, conv_id, msg_id, "pothole")
        async with db.transaction() as s:
            assert await cancel_timers(s, conv_id) == 2
        assert await fire_due_timers(db, rs, NOW + timedelta(days=2)) == 0
        async with db.read() as s:
            assert (await s.get(Conversation, conv_id)).queue == "roads"
    finally:
        await db.dispose()


async def test_replay_reports_moves_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    rs = load_rules(write_rules(tmp_path / "r", RULES))
    db = Database(db_url)
    try:
        seeded = await _seed(db, "pothole", n=3) + await _seed(db, "bin collection", n=2)
        for conv_id, msg_id in seeded:
            await _route(
                db, rs, conv_id, msg_id, "pothole" if conv_id <= seeded[2][0] else "bin collection"
            )
        candidate_dir = write_rules(
            tmp_path / "c",
            {
                **RULES,
                "waste.toml": """
            [[rule]]
            id = "waste"
            phase = "route"
            order = 2
            when.text.contains = "bin"
            then.queue = "waste"
            """,
            },
        )
        candidate = load_rules(candidate_dir)
        err = io.StringIO()
        result = await replay(db.read, candidate, NOW - timedelta(days=1), progress=err)
        assert result.total == 5 and result.changed == 2
        assert result.moves[("general", "waste")] == 2 and result.moves[("roads", "roads")] == 3
        assert "general -> waste: 2" in "\n".join(result.lines(candidate.version, NOW))
        assert "replayed 5" in err.getvalue()
        async with db.read() as s:
            queues = sorted((await s.scalars(select(Conversation.queue))).all())
            assert queues == ["general", "general", "roads", "roads", "roads"]  # nothing changed
    finally:
        await db.dispose()


def test_inbound_message_is_the_intake_type() -> None:
    assert InboundMessage(channel="email", provider_id="x", sender="a@b").text == ""
