"""Alembic environment: runs migrations on the hub's own async engines (asyncpg, aiosqlite)."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from hub.storage.tables import Base

target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, _parents: Any) -> bool:
    """Autogenerate leaves alone what a migration made beside the models: the search indexes
    of 0004 (FTS5 tables with their shadow tables on SQLite, pg_trgm indexes)."""
    if name is None:
        return True
    if type_ == "table":
        return "_fts" not in name
    return not (type_ == "index" and name.endswith("_trgm"))


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
