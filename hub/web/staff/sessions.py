"""Workspace sign-in: server-side sessions and the lockout after too many wrong passwords.

A session is a random token in an HttpOnly cookie; the database keeps its SHA-256, the staff
member, a CSRF token and when it ends (`[security] session_hours`). Deleting the row ends it
(logout here, a password change in hub.auth). Wrong passwords are counted per email, known or
not, so the answer never tells which emails exist; at `[security] max_login_attempts` the email
is locked for LOCK_MINUTES (or until an administrator sets a new password).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth import hash_password, needs_rehash, token_digest, verify_password_async
from hub.model import utcnow
from hub.staff import find_staff
from hub.storage.db import Database
from hub.storage.tables import LoginFailure, Staff, WebSession

LOCK_MINUTES = 15


@dataclass(frozen=True, slots=True)
class SignedIn:
    staff: Staff  # detached: read its attributes, never lazy-load
    csrf_token: str
    token_hash: str


class Outcome(Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"


async def start(db: Database, staff_id: int, hours: int) -> str:
    """A new session for `staff_id`; the cookie's token (only in this return value)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with db.transaction() as session:
        await session.execute(delete(WebSession).where(WebSession.expires_at <= now))
        session.add(WebSession(token_hash=token_digest(token), staff_id=staff_id,
                               csrf_token=secrets.token_urlsafe(32), created_at=now,
                               expires_at=now + timedelta(hours=hours)))
    return token


async def find(db: Database, token: str) -> SignedIn | None:
    """The live session of an active staff member that `token` opens, or None."""
    if not token or len(token) > 100:
        return None
    digest = token_digest(token)
    async with db.read() as session:
        row = (await session.execute(
            select(Staff, WebSession.csrf_token)
            .join(WebSession, WebSession.staff_id == Staff.id)
            .where(WebSession.token_hash == digest, WebSession.expires_at > utcnow(),
                   Staff.active.is_(True)))).first()
        if row is None:
            return None
        staff, csrf = row
        session.expunge(staff)
    return SignedIn(staff=staff, csrf_token=csrf, token_hash=digest)


async def end(db: Database, token_hash: str) -> None:
    async with db.transaction() as session:
        await session.execute(delete(WebSession).where(WebSession.token_hash == token_hash))


async def check_login(db: Database, email: str, password: str, max_attempts: int
                      ) -> tuple[Outcome, int | None]:
    """(outcome, staff id when OK). A locked email stays locked whatever the password. The
    slow hash is checked outside any transaction: a login never holds the write lock."""
    email = email.strip().lower()[:320]
    async with db.read() as session:
        if await _locked(session, email, max_attempts):
            return Outcome.LOCKED, None
        staff = await find_staff(session, email)
        staff_id = staff.id if staff is not None and staff.active else None
        stored = staff.password_hash if staff_id is not None and staff is not None else None
    good = await verify_password_async(stored, password)
    rehashed = (await asyncio.to_thread(hash_password, password)
                if good and stored is not None and needs_rehash(stored) else None)
    async with db.transaction() as session:
        if not good or staff_id is None:
            await _count_failure(session, email)
            return Outcome.WRONG, None
        await session.execute(delete(LoginFailure).where(LoginFailure.email == email))
        if rehashed is not None:
            await session.execute(update(Staff).where(Staff.id == staff_id)
                                  .values(password_hash=rehashed))
    return Outcome.OK, staff_id


async def _locked(session: AsyncSession, email: str, max_attempts: int) -> bool:
    row = await session.get(LoginFailure, email)
    return (row is not None and row.failures >= max_attempts
            and utcnow() - row.last_failed_at < timedelta(minutes=LOCK_MINUTES))


async def _count_failure(session: AsyncSession, email: str) -> None:
    row = await session.get(LoginFailure, email, with_for_update=True)
    now = utcnow()
    if row is None:
        session.add(LoginFailure(email=email, failures=1, last_failed_at=now))
    elif now - row.last_failed_at >= timedelta(minutes=LOCK_MINUTES):
        row.failures, row.last_failed_at = 1, now  # an old lock has run out: count afresh
    else:
        row.failures, row.last_failed_at = row.failures + 1, now
