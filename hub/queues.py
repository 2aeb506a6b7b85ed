"""Queues: the declared set synced into the database, and who belongs to which."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.routing.schema import QueueDecl
from hub.routing.watch import RuleReloader
from hub.storage.db import Database
from hub.storage.tables import Queue, QueueMember, Staff


def declared_queues(rules: RuleReloader | None, wanted: Iterable[str]) -> list[QueueDecl]:
    """The rule folder's queues, plus every queue the configuration names (the default queue,
    the inboxes' queues), which exist even when no rule file declares them."""
    declared = list(rules.queue_declarations()) if rules is not None else []
    for name in wanted:
        if all(q.name != name for q in declared):
            declared.append(QueueDecl(name=name, title=name.replace("_", " ").title()))
    return declared


async def sync_queues(db: Database, declared: Sequence[QueueDecl]) -> None:
    """Upsert the declared queues; a queue taken out of the file keeps its row (and its work)."""
    async with db.transaction() as session:
        existing = {q.name: q for q in await session.scalars(select(Queue))}
        for decl in declared:
            row = existing.get(decl.name)
            if row is None:
                row = Queue(name=decl.name)
                session.add(row)
            row.title, row.strategy, row.declared = decl.title or decl.name, decl.strategy, True
            row.capacity, row.calendar = decl.capacity or None, decl.calendar
            row.assign_to = decl.assign_to
        names = [d.name for d in declared]
        await session.execute(update(Queue).where(Queue.name.not_in(names)).values(declared=False))


async def member_queue_names(session: AsyncSession, staff: Staff) -> set[str]:
    rows = await session.scalars(
        select(Queue.name).join(QueueMember, QueueMember.queue_id == Queue.id)
        .where(QueueMember.staff_id == staff.id))
    return set(rows)


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
