"""The workspace's side of staff notifications (hub.staff_notify): the sidebar's recent
notifications and muted queues, and the mute toggle (`POST /staff/queues/{queue}/mute`, its CSRF
token checked by hub.web.staff.guard like every form)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from hub import service, staff_notify
from hub.storage.tables import Staff
from hub.web.keys import HUB_KEY
from hub.web.staff.guard import PREFIX, signed_in


async def sidebar(session: AsyncSession, staff: Staff) -> dict[str, Any]:
    """What the sidebar shows of notifications: the recent ones, and the muted queues."""
    return {"notifications": await staff_notify.recent_for(session, staff),
            "muted": await staff_notify.muted_queues(session, staff.id)}


async def toggle_mute(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    queue, muted = request.match_info["queue"], form.get("muted") == "1"
    staff = signed_in(request).staff
    async with request.app[HUB_KEY].db.transaction() as session:
        if queue not in {q.name for q in await service.queues_for(session, staff)}:
            raise web.HTTPNotFound()
        await staff_notify.set_muted(session, staff.id, queue, muted)
    raise web.HTTPSeeOther(f"{PREFIX}/")
