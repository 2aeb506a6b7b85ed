"""Staff accounts: creation, roles, queue membership (used by the CLI and the admin API)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.auth import hash_password
from hub.queues import set_membership
from hub.storage.tables import Staff

AGENT, SUPERVISOR, ADMIN = "agent", "supervisor", "admin"
ROLES = (AGENT, SUPERVISOR, ADMIN)
SUPERVISORS = (SUPERVISOR, ADMIN)  # see and work every queue, look after what was set aside
ADMINS = (ADMIN,)  # also manage staff

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class StaffError(ValueError):
    pass


async def find_staff(session: AsyncSession, email: str) -> Staff | None:
    return await session.scalar(select(Staff).where(Staff.email == email.strip().lower()))


async def add_staff(session: AsyncSession, email: str, *, name: str, role: str,
                    queues: Iterable[str] = (), password: str | None = None,
                    actor: str = "cli") -> Staff:
    email = email.strip().lower()
    if not _EMAIL_RE.match(email):
        raise StaffError(f"not an email address: {email!r}")
    if role not in ROLES:
        raise StaffError(f"role must be one of {', '.join(ROLES)}")
    if not name.strip():
        raise StaffError("name must not be empty")
    if await find_staff(session, email) is not None:
        raise StaffError(f"staff {email} exists already")
    staff = Staff(email=email, name=name.strip(), role=role,
                  password_hash=hash_password(password) if password else None)
    session.add(staff)
    await session.flush()
    try:
        await set_membership(session, staff, queues)
    except KeyError as exc:
        raise StaffError(f"unknown queue(s): {exc.args[0]}") from None
    audit.record(session, actor, "staff.add", "staff", staff.id, email=email, role=role,
                 queues=sorted(queues))
    return staff
