"""What the action forms offer (a conversation's page, the list's filters and bulk actions): the
staff a conversation may be assigned to (active, and able to work its queue, as
hub.service.assign requires), every queue to transfer to, and the priorities."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import Priority
from hub.service import SUPERVISORS
from hub.storage.tables import Queue, QueueMember, Staff


async def assignees(session: AsyncSession, queue: str | None) -> list[Staff]:
    members = (select(QueueMember.staff_id).join(Queue, Queue.id == QueueMember.queue_id)
               .where(Queue.name == queue))
    return list(await session.scalars(select(Staff).where(
        Staff.active.is_(True), or_(Staff.role.in_(SUPERVISORS), Staff.id.in_(members)))
        .order_by(Staff.name, Staff.email)))


async def list_choices(session: AsyncSession) -> dict[str, Any]:
    return {"all_queues": list(await session.scalars(select(Queue).order_by(Queue.name))),
            "priorities": [p.value for p in Priority]}


async def action_choices(session: AsyncSession, queue: str | None) -> dict[str, Any]:
    """The conversation page's select options, as (value, text) pairs."""
    listed = await list_choices(session)
    return {"assign_options": [("", "Nobody (unassigned)")] + [
                (s.email, f"{s.name} ({s.email})") for s in await assignees(session, queue)],
            "queue_options": [(q.name, q.name) for q in listed["all_queues"]],
            "priority_options": [(p, p) for p in listed["priorities"]]}
