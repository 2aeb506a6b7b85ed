"""Queues: the declared set synced into the database, who belongs to which, who may see what."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.storage.tables import Queue, QueueMember, Staff

if TYPE_CHECKING:
    from hub.app import Hub

ROLES = ("agent", "supervisor", "admin")


@dataclass(frozen=True, slots=True)
class QueueDeclaration:
    name: str
    title: str
    strategy: str = "manual"
    capacity: int | None = None
    calendar: str | None = None


def declared_queues(hub: Hub) -> list[QueueDeclaration]:
    declared = list(getattr(hub.rules, "queue_declarations", lambda: [])())
    wanted = [hub.settings.routing.default_queue, *hub.settings.smtp.inboxes.values()]
    for name in wanted:  # queues named in config exist even when no rule file declares them
        if all(q.name != name for q in declared):
            declared.append(QueueDeclaration(name, name.replace("_", " ").title()))
    return declared


async def sync_queues(hub: Hub) -> None:
    """Upsert the declared queues; a queue taken out of the file keeps its row (and its work)."""
    declared = declared_queues(hub)
    async with hub.db.transaction() as session:
        existing = {q.name: q for q in await session.scalars(select(Queue))}
        for decl in declared:
            row = existing.get(decl.name)
            if row is None:
                session.add(Queue(name=decl.name, title=decl.title, strategy=decl.strategy,
                                  capacity=decl.capacity, calendar=decl.calendar, declared=True))
            else:
                row.title, row.strategy = decl.title, decl.strategy
                row.capacity, row.calendar, row.declared = decl.capacity, decl.calendar, True
        names = [d.name for d in declared]
        await session.execute(update(Queue).where(Queue.name.not_in(names)).values(declared=False))


async def member_queue_names(session: AsyncSession, staff: Staff) -> set[str]:
    rows = await session.scalars(
        select(Queue.name).join(QueueMember, QueueMember.queue_id == Queue.id)
        .where(QueueMember.staff_id == staff.id))
    return set(rows)


async def visible_queue_names(session: AsyncSession, staff: Staff) -> set[str] | None:
    """None means every queue (supervisors and admins)."""
    if staff.role in ("supervisor", "admin"):
        return None
    return await member_queue_names(session, staff)


async def set_membership(session: AsyncSession, staff: Staff, queue_names: Iterable[str]) -> None:
    wanted = set(queue_names)
    queues = {q.name: q for q in await session.scalars(select(Queue).where(Queue.name.in_(wanted)))}
    missing = wanted - set(queues)
    if missing:
        raise KeyError(", ".join(sorted(missing)))
    current = set(await session.scalars(
        select(QueueMember.queue_id).where(QueueMember.staff_id == staff.id)))
    for queue in queues.values():
        if queue.id not in current:
            session.add(QueueMember(staff_id=staff.id, queue_id=queue.id))
