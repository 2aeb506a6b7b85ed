"""Shared fixtures: real databases (SQLite and PostgreSQL for every storage test), real Redis,
and a hub wired to a recording test adapter.

PostgreSQL comes from HUB_TEST_POSTGRES_URL (scripts/test.sh starts a private server and sets
it), else the machine's standard local port; each session creates and drops its own database.
Redis is always a private redis-server started by the tests, so a test may stop it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.app import Hub
from hub.config import Settings
from hub.storage.db import upgrade_sync
from hub.storage.tables import Base
from tests.support.adapter import RecordingAdapter
from tests.support.services import RedisServer

PG_BASE = os.environ.get("HUB_TEST_POSTGRES_URL",
                         "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


def _pg_admin(sql: str) -> None:
    async def run() -> None:
        engine = create_async_engine(PG_BASE, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(sql))
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"hub_test_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # a missing server is a failure to report, not a skip
        pytest.fail(f"PostgreSQL at {PG_BASE} is not reachable: {exc}. "
                    "Run the suite with scripts/test.sh, or set HUB_TEST_POSTGRES_URL.")
    url = PG_BASE.rsplit("/", 1)[0] + f"/{name}"
    upgrade_sync(url)
    yield url
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_sql() -> str:
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    return f"TRUNCATE {tables} RESTART IDENTITY CASCADE"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each kind: every storage test runs on both."""
    if request.param == "sqlite":
        target = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")

    async def clean() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text(_truncate_sql()))
        await engine.dispose()

    asyncio.run(clean())
    return url


@pytest.fixture
def settings_data(db_url: str, tmp_path: Path) -> dict[str, dict[str, object]]:
    """Test settings as a dict, so a test can change a key before building Settings."""
    return {
        "hub": {"data_dir": str(tmp_path / "data"), "secret_key": "test-secret"},
        "database": {"url": db_url, "migrate_on_start": False},
        "smtp": {"enabled": False},
        "email": {"acknowledge": False},
        "routing": {"rules_dir": str(tmp_path / "no-rules"), "watch": False},
        "outbox": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2,
                   "sweep_interval_seconds": 0.1, "stale_after_seconds": 5},
    }


@pytest.fixture
def settings(settings_data: dict[str, dict[str, object]]) -> Settings:
    return Settings.model_validate(settings_data)


@pytest.fixture
def adapter() -> RecordingAdapter:
    return RecordingAdapter()


@pytest.fixture
async def hub(settings: Settings, adapter: RecordingAdapter) -> AsyncIterator[Hub]:
    instance = Hub(settings, adapters=[adapter])
    await instance.prepare()
    yield instance
    await instance.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private Redis for the session (it keeps nothing on disk)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    from redis import Redis

    client = Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    return redis_server.url
