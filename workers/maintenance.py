"""Periodic upkeep: re-enqueue outbox items whose job was lost or is due again, refresh the
outbox gauge, fire due routing timers, purge worked spool items and spent sign-ins. Safe to run
in several processes at once."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, func, or_, select, update

from hub import metrics
from hub.model import OutboxState, utcnow
from hub.storage.tables import LoginFailure, OutboxItem, SpoolEntry, WebSession

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
FAILURES_KEPT = timedelta(days=1)


async def sweep_outbox(hub: Hub) -> int:
    """Hand due items to the job queue again; return how many were handed over."""
    now = utcnow()
    hold = timedelta(seconds=hub.settings.outbox.stale_after_seconds)
    due = or_(
        and_(OutboxItem.state == OutboxState.PENDING.value, OutboxItem.next_attempt_at <= now,
             or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until < now)),
        and_(OutboxItem.state == OutboxState.SENDING.value, OutboxItem.locked_until < now),
    )
    async with hub.db.transaction() as session:
        ids = list(await session.scalars(
            select(OutboxItem.id).where(due).order_by(OutboxItem.id).limit(SWEEP_BATCH)))
        if not ids:
            return 0
        # Hold them for a while so the next sweep does not enqueue them again meanwhile.
        await session.execute(update(OutboxItem)
                              .where(OutboxItem.id.in_(ids),
                                     OutboxItem.state == OutboxState.PENDING.value)
                              .values(locked_until=now + hold))
    handed = await hub.jobs.enqueue_delivery(ids)
    if handed < len(ids):
        async with hub.db.transaction() as session:
            await session.execute(update(OutboxItem)
                                  .where(OutboxItem.id.in_(ids[handed:]),
                                         OutboxItem.state == OutboxState.PENDING.value)
                                  .values(locked_until=None))
    return handed


async def refresh_outbox_gauge(hub: Hub) -> dict[str, int]:
    async with hub.db.read() as session:
        rows = (await session.execute(
            select(OutboxItem.state, func.count()).group_by(OutboxItem.state))).all()
    counts = {state.value: 0 for state in OutboxState}
    counts.update({state: count for state, count in rows})
    for state, count in counts.items():
        metrics.OUTBOX_DEPTH.labels(state).set(count)
    await refresh_spool_gauge(hub)
    return counts


async def refresh_spool_gauge(hub: Hub) -> dict[str, int]:
    """Spool items by state, read from the database: what was set aside stays visible across
    restarts (the `hub_spool_failed` counter only counts since this process started)."""
    async with hub.db.read() as session:
        rows = (await session.execute(
            select(SpoolEntry.state, func.count()).group_by(SpoolEntry.state))).all()
    counts = {"pending": 0, "done": 0, "failed": 0}
    counts.update({state: count for state, count in rows})
    for state, count in counts.items():
        metrics.SPOOL_ITEMS.labels(state).set(count)
    return counts


async def fire_timers(hub: Hub) -> int:
    from hub.routing.timers import fire_due_timers

    fired = await fire_due_timers(hub.db, hub.router(), utcnow(),
                                  on_outbox=hub.jobs.submit_delivery, events=hub.events)
    return int(fired or 0)


async def purge_spool(hub: Hub) -> int:
    from hub.spool import purge_worked

    return await purge_worked(hub.db, timedelta(days=hub.settings.spool.keep_days))


async def purge_sign_ins(hub: Hub) -> int:
    """Workspace sessions past their end, and wrong-password counts a day old (long past any
    lockout): an unknown email tried once must not stay a row for ever."""
    now = utcnow()
    async with hub.db.transaction() as session:
        ended = await session.execute(delete(WebSession).where(WebSession.expires_at < now))
        old = await session.execute(delete(LoginFailure).where(
            LoginFailure.last_failed_at < now - FAILURES_KEPT))
    return int(ended.rowcount or 0) + int(old.rowcount or 0)  # type: ignore[attr-defined]


async def run_once(hub: Hub) -> None:
    for step in (sweep_outbox, fire_timers, refresh_outbox_gauge, purge_spool, purge_sign_ins):
        try:
            await step(hub)
        except Exception:
            log.exception("maintenance step %s failed; it runs again next round", step.__name__)
