"""Staff credentials: passwords (argon2id; older scrypt hashes still verify and are upgraded at
the next good login), setting a password (which ends every web session of that person), and API
tokens (random, stored only as a SHA-256).

Hashing and verifying are deliberately slow: callers on the event loop run them in a thread
(`verify_password_async`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.storage.tables import ApiToken, LoginFailure, Staff, WebSession

TOKEN_PREFIX = "hub_"  # noqa: S105 - a public prefix, not a secret
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the email is unknown or has no password: both take as long as a miss."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash (argon2, or the older `scrypt$salt$digest`)."""
    if stored is None:
        _verify_argon2(_dummy_hash(), password)
        return False
    if stored.startswith("scrypt$"):
        return _verify_scrypt(stored, password)
    return _verify_argon2(stored, password)


async def verify_password_async(stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, stored, password)


def needs_rehash(stored: str) -> bool:
    """True for a hash made the old way or with weaker parameters than today's."""
    return stored.startswith("scrypt$") or _HASHER.check_needs_rehash(stored)


def _verify_argon2(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _verify_scrypt(stored: str, password: str) -> bool:
    try:
        _, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        given = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(given, expected)


async def set_password(session: AsyncSession, staff: Staff, password: str) -> None:
    """A new password: every web session of `staff` ends and the lockout count starts again."""
    staff.password_hash = await asyncio.to_thread(hash_password, password)
    await session.execute(delete(WebSession).where(WebSession.staff_id == staff.id))
    await session.execute(delete(LoginFailure).where(LoginFailure.email == staff.email))
    await session.flush()


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
    return await session.scalar(_STAFF_FOR_DIGEST, {"digest": token_digest(token)})


# Built once: every API request asks it, and building the statement and its cache key again
# cost as much as running it. Only the staff row is built: the token row is a condition.
_STAFF_FOR_DIGEST = (
    select(Staff).join(ApiToken, ApiToken.staff_id == Staff.id)
    .where(ApiToken.token_hash == bindparam("digest"), ApiToken.revoked_at.is_(None),
           Staff.active.is_(True)))
