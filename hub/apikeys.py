"""Open311 API keys: made by `hub apikey create NAME`, ended by `hub apikey revoke NAME`, checked
by POST /open311/v2/requests.json.

Only a key's SHA-256 is stored; the key itself exists in `create_key`'s return value alone, so
a copy of the database opens nothing. A name is unique: one key per client app.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.auth import token_digest as key_digest  # the same SHA-256 hex as API tokens
from hub.model import utcnow
from hub.storage.tables import Open311Key

KEY_PREFIX = "o311_"
MAX_KEY = 128


class KeyExists(ValueError):
    pass


class NoSuchKey(LookupError):
    pass


async def create_key(session: AsyncSession, name: str) -> str:
    """A new key for the client `name`; raises KeyExists when the name has a live one (a
    revoked one is replaced)."""
    row = await session.scalar(select(Open311Key).where(Open311Key.name == name))
    if row is not None and row.revoked_at is None:
        raise KeyExists(f"an API key named {name!r} exists already")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    if row is None:
        session.add(Open311Key(name=name, key_hash=key_digest(key), prefix=key[:12]))
    else:
        row.key_hash, row.prefix, row.revoked_at, row.last_used_at = (
            key_digest(key), key[:12], None, None)
        row.created_at = utcnow()
    await session.flush()
    return key


async def revoke_key(session: AsyncSession, name: str) -> None:
    """The key of client `name` stops working at once; raises NoSuchKey when it has no live one."""
    row = await session.scalar(select(Open311Key).where(Open311Key.name == name,
                                                        Open311Key.revoked_at.is_(None)))
    if row is None:
        raise NoSuchKey(f"no live API key named {name!r}")
    row.revoked_at = utcnow()


async def key_holder(session: AsyncSession, key: str) -> Open311Key | None:
    """The live key row for `key` (its last use noted), or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY:
        return None
    row = await session.scalar(select(Open311Key).where(
        Open311Key.key_hash == key_digest(key), Open311Key.revoked_at.is_(None)))
    if row is not None:
        row.last_used_at = utcnow()
    return row
