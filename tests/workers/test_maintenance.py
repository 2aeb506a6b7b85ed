"""Upkeep on both databases: spent workspace sign-ins are purged, live ones are kept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from hub.app import Hub
from hub.model import utcnow
from hub.staff import add_staff
from hub.storage.tables import LoginFailure, WebSession
from hub.workers.maintenance import purge_sign_ins


async def test_ended_sessions_and_day_old_failures_are_purged(hub: Hub) -> None:
    now = utcnow()
    async with hub.db.transaction() as session:
        staff = await add_staff(session, "clerk@city.example", name="Clerk", role="agent")
        session.add_all([
            WebSession(token_hash="a" * 64, staff_id=staff.id, csrf_token="x",
                       expires_at=now - timedelta(minutes=1)),
            WebSession(token_hash="b" * 64, staff_id=staff.id, csrf_token="y",
                       expires_at=now + timedelta(hours=1)),
            LoginFailure(email="nobody@example.org", failures=1,
                         last_failed_at=now - timedelta(days=2)),
            LoginFailure(email="clerk@city.example", failures=3,
                         last_failed_at=now - timedelta(minutes=5)),
        ])
    assert await purge_sign_ins(hub) == 2
    async with hub.db.read() as session:
        assert list(await session.scalars(select(WebSession.token_hash))) == ["b" * 64]
        assert list(await session.scalars(select(LoginFailure.email))) == ["clerk@city.example"]
    assert await purge_sign_ins(hub) == 0
