"""Rows that nothing reads back within their own transaction (audit entries, routing decisions,
timers, once_per windows, attachments, identities): held until the commit and then written with
one multi-row INSERT per table, after the flush that wrote the rows they refer to.

An ORM object per row would cost a flush and a RETURNING round trip each (its id must come
back); a batch of a hundred messages writes some six hundred such rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from sqlalchemy import MetaData, Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Session

_KEY = "hub.rows"


def add_row(session: AsyncSession | Session, model: type[DeclarativeBase],
            **values: Any) -> None:
    """Write `values` as a row of `model`'s table when the transaction commits."""
    table: Table = model.__table__  # type: ignore[assignment]
    session.info.setdefault(_KEY, {}).setdefault(table, []).append(values)


async def write_rows_now(session: AsyncSession) -> None:
    """Write the held rows at once, for a statement that must see them (rare)."""
    await session.run_sync(_write_rows)


@event.listens_for(Session, "before_commit")
def _write_rows(session: Session) -> None:
    held: dict[Table, list[dict[str, Any]]] | None = session.info.get(_KEY)
    if not held:
        return
    session.flush()  # the rows they refer to first
    connection = session.connection()
    held = session.info.pop(_KEY)
    # Tables a row refers to before the tables that refer to them (an outbox row after its
    # message), whatever order the rows were held in.
    for table in sorted(held, key=_rank(next(iter(held)).metadata)):
        rows = held[table]
        # Rows with different keys would need different statements: group them by their keys.
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            shapes.setdefault(tuple(sorted(row)), []).append(row)
        for same in shapes.values():
            connection.execute(insert(table), same)


@functools.cache
def _rank(metadata: MetaData) -> Callable[[Table], int]:
    order = {table: rank for rank, table in enumerate(metadata.sorted_tables)}
    return order.__getitem__


@event.listens_for(Session, "after_soft_rollback")
def _forget_rows(session: Session, _previous: Any) -> None:
    session.info.pop(_KEY, None)
