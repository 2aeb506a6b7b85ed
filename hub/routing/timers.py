"""SLA timers: firing due escalation steps exactly once, and cancelling them on a staff reply.

A timer row is claimed with `UPDATE ... SET state='fired' WHERE id=? AND state='pending'`; only
the sweeper whose update touched one row applies the actions, in the same transaction, so two
sweepers (or a restart in the middle) never fire a step twice, and a failure leaves it pending
for the next sweep. Timers live in the database, so they survive restarts.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.model import PRIORITY_RANK
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


async def fire_one(
    db: Any, timer_id: int, now: datetime, known_queue: Callable[[str], bool]
) -> bool:
    async with _transaction(db) as session:
        if not await _claim(session, timer_id, now):
            return False  # another sweeper fired it, or a staff reply cancelled it
        timer = await session.get(ConversationTimer, timer_id)
        assert timer is not None
        conv = await session.get(Conversation, timer.conversation_id)
        if conv is None or conv.status in CLOSED or conv.spam:
            timer.state = "cancelled"
            return False
        done = _apply_actions(session, conv, timer, known_queue)
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
        return True


async def fire_due_timers(
    session_factory: Any, router: Any, now: datetime, *, limit: int = 200
) -> int:
    """Fire every pending timer due at `now`; returns how many fired."""
    queues = getattr(router, "queues", None)
    if queues is None and getattr(router, "current", None) is not None:
        queues = router.current.queues

    def known_queue(name: str) -> bool:
        return queues is None or name in queues

    fired = 0
    for timer_id in await due_timer_ids(session_factory, now, limit):
        if await fire_one(session_factory, timer_id, now, known_queue):
            fired += 1
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
