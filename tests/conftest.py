"""Shared fixtures: real databases (SQLite and PostgreSQL for every storage test), real Redis,
local stand-ins of the Twilio and Telegram APIs, and a hub wired to a recording test adapter.

PostgreSQL comes from HUB_TEST_POSTGRES_URL (scripts/test.sh starts a private server and sets
it), else the machine's standard local port; each session creates and drops its own database.
Redis is always a private redis-server started by the tests, so a test may stop it.

Switches: HUB_TEST_BACKENDS=sqlite,postgres (the default) picks the databases `db_url` runs on;
tests on PostgreSQL get the `postgres` marker and tests on Redis the `redis` marker by
themselves, so `-m "not postgres"` works. Tests marked `slow_e2e` run on one backend (SQLite
when chosen) unless `--full` or HUB_TEST_FULL=1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hub.app import Hub
from hub.config import Settings
from hub.storage.db import upgrade_sync
from hub.storage.tables import Base
from tests.support.adapter import RecordingAdapter
from tests.support.services import RedisServer

if TYPE_CHECKING:  # imported in their fixtures: most tests need neither provider library
    from tests.support.telegram_api import TelegramApi
    from tests.support.twilio_api import TwilioApi

PG_BASE = os.environ.get("HUB_TEST_POSTGRES_URL",
                         "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
# Names accepted in HUB_TEST_BACKENDS, to the `db_url` param each one selects.
_BACKEND_NAMES = {"sqlite": "sqlite", "postgres": "postgresql", "postgresql": "postgresql"}


def _chosen_backends() -> tuple[list[str], list[str]]:
    """The `db_url` params HUB_TEST_BACKENDS asks for, and the names it got wrong."""
    raw = os.environ.get("HUB_TEST_BACKENDS", "") or "sqlite,postgres"
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    chosen = [_BACKEND_NAMES[n] for n in names if n in _BACKEND_NAMES]
    return list(dict.fromkeys(chosen)), [n for n in names if n not in _BACKEND_NAMES]


BACKENDS, _UNKNOWN_BACKENDS = _chosen_backends()
# The one backend a slow_e2e test runs on without --full.
PRIMARY_BACKEND = "sqlite" if "sqlite" in BACKENDS or not BACKENDS else BACKENDS[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", default=False,
                     help="run slow_e2e tests on every backend, not only SQLite "
                          "(same as HUB_TEST_FULL=1)")


def pytest_configure(config: pytest.Config) -> None:
    if _UNKNOWN_BACKENDS or not BACKENDS:
        raise pytest.UsageError(
            f"HUB_TEST_BACKENDS={os.environ.get('HUB_TEST_BACKENDS')!r}: expected a comma-separated "
            f"list of {', '.join(sorted(_BACKEND_NAMES))}")


def _run_full(config: pytest.Config) -> bool:
    return bool(config.getoption("--full")) or os.environ.get("HUB_TEST_FULL", "") == "1"


def _backend_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("db_url") if callspec is not None else None
    return value if isinstance(value, str) else None


def _fixtures(item: pytest.Item) -> set[str]:
    return set(getattr(item, "fixturenames", ()))


def _keep(item: pytest.Item, full: bool) -> bool:
    backend = _backend_of(item)
    if backend is None:  # a test that asks for PostgreSQL itself follows the switch too
        return "pg_database" not in _fixtures(item) or "postgresql" in BACKENDS
    if backend not in BACKENDS:  # e.g. parametrize("db_url", ["postgresql"], indirect=True)
        return False
    return full or item.get_closest_marker("slow_e2e") is None or backend == PRIMARY_BACKEND


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks tests by the services they use and drops the ones the switches leave out."""
    full = _run_full(config)
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if _backend_of(item) == "postgresql" or "pg_database" in _fixtures(item):
            item.add_marker(pytest.mark.postgres)
        if {"redis_server", "redis_url"} & _fixtures(item):
            item.add_marker(pytest.mark.redis)
        (keep if _keep(item, full) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


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


def _emptying_script() -> str:
    """Every table emptied, children first, and every sequence back at 1, in one round trip:
    a test's few rows go faster with DELETE than with TRUNCATE, which remakes each table's
    files (80 ms for all of them, before each of the ~900 tests on PostgreSQL)."""
    deletes = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    return (f"{deletes}; SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relkind = 'S' AND n.nspname = 'public'")


async def _empty_pg(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        async with conn.transaction():
            await conn.execute(_emptying_script())
    except asyncpg.PostgresError:  # rows that refer to each other: TRUNCATE untangles them
        await conn.execute(_truncate_sql())
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS or ["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each chosen kind: every storage test runs on each."""
    if request.param == "sqlite":
        target = tmp_path / "hub.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")

    asyncio.run(_empty_pg(url))
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


@pytest.fixture
async def twilio_api() -> AsyncIterator[TwilioApi]:
    """A Twilio REST API stand-in on a free local port (see tests/support/twilio_api.py)."""
    from tests.support.twilio_api import TwilioApi

    async with TwilioApi() as api:
        yield api


@pytest.fixture
async def telegram_api() -> AsyncIterator[TelegramApi]:
    """A Telegram Bot API stand-in on a free local port (see tests/support/telegram_api.py)."""
    from tests.support.telegram_api import TelegramApi

    async with TelegramApi() as api:
        yield api
