"""Open311 API keys: made by `hub apikey create NAME`, checked by POST /open311/v2/requests.json.

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


async def create_key(session: AsyncSession, name: str) -> str:
    """A new key for the client `name`; raises KeyExists when the name has one."""
    if await session.scalar(select(Open311Key.id).where(Open311Key.name == name)) is not None:
        raise KeyExists(f"an API key named {name!r} exists already")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(Open311Key(name=name, key_hash=key_digest(key), prefix=key[:12]))
    await session.flush()
    return key


async def key_holder(session: AsyncSession, key: str) -> Open311Key | None:
    """The live key row for `key` (its last use noted), or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > MAX_KEY:
        return None
    row = await session.scalar(select(Open311Key).where(
        Open311Key.key_hash == key_digest(key), Open311Key.revoked_at.is_(None)))
    if row is not None:
        row.last_used_at = utcnow()
    return row
