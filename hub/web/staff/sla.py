"""SLA on the workspace: which pending escalation timers (hub.routing.timers) put a
conversation "at risk", and the conversation page's list of its pending timers.

A conversation is at risk when one of its pending timers is overdue or due within
`[routing] sla_risk_minutes`; the sidebar counts them per queue and `?view=at_risk` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import utcnow
from hub.storage.tables import ConversationTimer


def risk_horizon(minutes: int, now: datetime | None = None) -> datetime:
    """Timers due before this moment put their conversation at risk."""
    return (now or utcnow()) + timedelta(minutes=minutes)


@dataclass(frozen=True, slots=True)
class TimerRow:
    step: str
    rule: str
    due_at: datetime
    does: list[str]  # what firing it changes, as "key: value"
    overdue: bool
    at_risk: bool


def _does(actions: dict[str, Any]) -> list[str]:
    return [f"{key}: {json.dumps(value, ensure_ascii=False, default=str)}"
            for key, value in actions.items() if value]


async def pending_timers(session: AsyncSession, conversation_id: int, risk_minutes: int,
                         now: datetime | None = None) -> list[TimerRow]:
    """The conversation's pending timers, soonest first."""
    now = now or utcnow()
    horizon = risk_horizon(risk_minutes, now)
    timers = await session.scalars(
        select(ConversationTimer)
        .where(ConversationTimer.conversation_id == conversation_id,
               ConversationTimer.state == "pending")
        .order_by(ConversationTimer.due_at, ConversationTimer.id))
    return [TimerRow(t.step, t.rule_id, t.due_at, _does(t.actions or {}),
                     overdue=t.due_at <= now, at_risk=t.due_at <= horizon) for t in timers]
