"""Staff credentials: passwords (scrypt) and API tokens (random, stored only as a SHA-256)."""

from __future__ import annotations

import base64
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.storage.tables import ApiToken, Staff

TOKEN_PREFIX = "hub_"  # noqa: S105 - a public prefix, not a secret
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(session: AsyncSession, staff: Staff) -> str:
    """A new token for staff; the clear text exists only in this return value."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(staff_id=staff.id, token_hash=token_digest(token), prefix=token[:12]))
    await session.flush()
    return token


async def staff_for_token(session: AsyncSession, token: str) -> Staff | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    # only the staff row is built: the token row is a condition, never read
    return await session.scalar(
        select(Staff).join(ApiToken, ApiToken.staff_id == Staff.id)
        .where(ApiToken.token_hash == token_digest(token), ApiToken.revoked_at.is_(None),
               Staff.active.is_(True)))
