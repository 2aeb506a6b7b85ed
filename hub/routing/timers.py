"""SLA timers: firing due escalation steps exactly once, and cancelling them on a staff reply.

A timer row is claimed with `UPDATE ... SET state='fired' WHERE id=? AND state='pending'`; only
the sweeper whose update touched one row applies the actions, in the same transaction, so two
sweepers (or a restart in the middle) never fire a step twice, and a failure leaves it pending
for the next sweep. Timers live in the database, so they survive restarts.

A step's `notify` reaches staff as a rule-level notify does (hub.staff_notify: the internal
email through the outbox, the `staff.notify` event, muted queues respected): queued in the
step's transaction, handed to `on_outbox` and published on `events` once it committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.events import Event, EventBus
from hub.model import PRIORITY_RANK
from hub.routing import Notify
from hub.storage.tables import Conversation, ConversationTimer

CLOSED = ("resolved", "closed")


@contextlib.asynccontextmanager
async def _transaction(db: Any) -> AsyncIterator[AsyncSession]:
    """Accepts the hub's Database (`.transaction()`) or a plain async_sessionmaker."""
    if hasattr(db, "transaction"):
        async with db.transaction() as session:
            yield session
    else:
        async with db() as session, session.begin():
            yield session


def pending_due_before(due_before: datetime) -> ColumnElement[bool]:
    """True for a conversation with a pending timer due by `due_before`, overdue ones included
    (the workspace's "SLA at risk")."""
    return exists().where(ConversationTimer.conversation_id == Conversation.id,
                          ConversationTimer.state == "pending",
                          ConversationTimer.due_at <= due_before)


async def due_timer_ids(db: Any, now: datetime, limit: int) -> list[int]:
    async with _transaction(db) as session:
        rows = await session.scalars(
            select(ConversationTimer.id)
            .where(ConversationTimer.state == "pending", ConversationTimer.due_at <= now)
            .order_by(ConversationTimer.due_at, ConversationTimer.id)
            .limit(limit)
        )
        return list(rows)


async def _claim(session: AsyncSession, timer_id: int, now: datetime) -> bool:
    result = await session.execute(
        update(ConversationTimer)
        .where(ConversationTimer.id == timer_id, ConversationTimer.state == "pending")
        .values(state="fired", fired_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1


def _apply_actions(
    session: AsyncSession,
    conv: Conversation,
    timer: ConversationTimer,
    known_queue: Callable[[str], bool],
) -> dict[str, Any]:
    actions = timer.actions or {}
    done: dict[str, Any] = {}
    queue = actions.get("queue")
    if queue and queue != conv.queue and known_queue(queue):
        conv.queue = done["queue"] = queue
    priority = actions.get("priority")
    # An escalation only ever raises the priority: staff may have raised it further already.
    if priority and PRIORITY_RANK.get(priority, 0) > PRIORITY_RANK.get(conv.priority, 0):
        conv.priority = done["priority"] = priority
    if actions.get("tags_add") or actions.get("tags_remove"):
        tags = [t for t in (conv.tags or []) if t not in actions.get("tags_remove", [])]
        tags += [t for t in actions.get("tags_add", []) if t not in tags]
        conv.tags = done["tags"] = tags
    for note in actions.get("notify", []):
        audit.record(
            session,
            "rules",
            "rules.notify",
            "conversation",
            conv.id,
            rule_id=timer.rule_id,
            step=timer.step,
            **note,
        )
    return done


@dataclass(slots=True)
class Fired:
    """What a fired step leaves to do after its commit: deliveries and events."""

    outbox_ids: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


async def _notify(session: AsyncSession, conv: Conversation, timer: ConversationTimer) -> Fired:
    # Imported here: hub.staff_notify needs hub.outbound, which needs this module.
    from hub.staff_notify import notify_staff

    notes = [Notify(timer.rule_id, str(n.get("kind", "")), str(n.get("target", "")),
                    str(n.get("text", ""))) for n in (timer.actions or {}).get("notify", [])]
    outbox_ids, events = await notify_staff(session, conv, notes)
    return Fired(outbox_ids, events)


async def fire_one(
    db: Any, timer_id: int, now: datetime, known_queue: Callable[[str], bool]
) -> bool:
    return await _fire(db, timer_id, now, known_queue) is not None


async def _fire(
    db: Any, timer_id: int, now: datetime, known_queue: Callable[[str], bool]
) -> Fired | None:
    async with _transaction(db) as session:
        if not await _claim(session, timer_id, now):
            return None  # another sweeper fired it, or a staff reply cancelled it
        timer = await session.get(ConversationTimer, timer_id)
        assert timer is not None
        conv = await session.get(Conversation, timer.conversation_id)
        if conv is None or conv.status in CLOSED or conv.spam:
            timer.state = "cancelled"
            return None
        done = _apply_actions(session, conv, timer, known_queue)
        fired = await _notify(session, conv, timer)
        audit.record(
            session,
            "rules",
            "rules.escalate",
            "conversation",
            conv.id,
            rule_id=timer.rule_id,
            step=timer.step,
            changed=done,
        )
    return fired


async def fire_due_timers(
    session_factory: Any, router: Any, now: datetime, *, limit: int = 200,
    on_outbox: Callable[[Sequence[int]], object] | None = None, events: EventBus | None = None,
) -> int:
    """Fire every pending timer due at `now`; returns how many fired. The steps' staff
    notifications go to `on_outbox` (their emails) and `events` after each step's commit."""
    queues = getattr(router, "queues", None)
    if queues is None and getattr(router, "current", None) is not None:
        queues = router.current.queues

    def known_queue(name: str) -> bool:
        return queues is None or name in queues

    fired = 0
    for timer_id in await due_timer_ids(session_factory, now, limit):
        done = await _fire(session_factory, timer_id, now, known_queue)
        if done is None:
            continue
        fired += 1
        if done.outbox_ids and on_outbox is not None:
            on_outbox(done.outbox_ids)
        for event in done.events:
            if events is not None:
                events.publish(event)
    return fired


async def cancel_timers(session: AsyncSession, conversation_id: int) -> int:
    """A staff reply answers the citizen: the steps still pending no longer apply."""
    result = await session.execute(
        update(ConversationTimer)
        .where(
            ConversationTimer.conversation_id == conversation_id,
            ConversationTimer.state == "pending",
        )
        .values(state="cancelled")
    )
    return int(getattr(result, "rowcount", 0) or 0)
