"""Primary keys handed out before the INSERT, so that a batch of rows that refer to each other
(a conversation, its message, the acknowledgment and its outbox row) is written with one
multi-row statement per table, with no flush and no RETURNING per row.

PostgreSQL: blocks of values from the table's own sequence (`nextval`), so concurrent writers
never meet. SQLite: the write transaction holds the database's only write lock (BEGIN
IMMEDIATE), so the next free id is the table's highest plus one, read once per transaction;
every writer of an allocated table within that transaction must then take its ids here.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

ALLOCATED = frozenset({"contacts", "conversations", "messages", "outbox"})
BLOCK = 64  # ids taken from a PostgreSQL sequence at once (the unused rest is a harmless gap)
_KEY = "hub.ids"
# Table names come from ALLOCATED only, never from input.
_TOP = {t: text(f"SELECT coalesce(max(id), 0) FROM {t}") for t in ALLOCATED}  # noqa: S608
_TAKE = {t: text(f"SELECT nextval(pg_get_serial_sequence('{t}', 'id')) "  # noqa: S608
                 "FROM generate_series(1, :n)") for t in ALLOCATED}


class IdAllocator:
    """The ids of one transaction; get it with `ids(session)`."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._sqlite = session.get_bind().dialect.name == "sqlite"
        self._free: dict[str, list[int]] = {}
        self._next: dict[str, int] = {}

    async def next(self, table: str) -> int:
        assert table in ALLOCATED, f"{table} ids are not allocated"
        if self._sqlite:
            if table not in self._next:
                top = await self._session.scalar(_TOP[table])
                self._next[table] = int(top or 0) + 1
            value = self._next[table]
            self._next[table] = value + 1
            return value
        await self.reserve(table, 1)
        return self._free[table].pop()

    async def reserve(self, table: str, count: int) -> None:
        """PostgreSQL: make sure `count` ids are at hand, taking them in one round trip (a
        batch knows how many it needs; one more id takes a block)."""
        if self._sqlite or count <= 0:
            return
        free = self._free.setdefault(table, [])
        if len(free) < count:
            rows = await self._session.scalars(_TAKE[table],
                                               {"n": max(BLOCK, count - len(free))})
            free.extend(int(row) for row in rows)
            free.sort(reverse=True)


def ids(session: AsyncSession) -> IdAllocator:
    """The allocator of the session's current transaction."""
    allocator = session.info.get(_KEY)
    if allocator is None:
        allocator = session.info[_KEY] = IdAllocator(session)
    return allocator
