"""Polling survives a SIGKILL: a real `hub serve` process reads getUpdates from the Bot API
stand-in; it is killed after the stand-in served a batch and before that batch was committed
(the spool table is held locked by the test, so the commit cannot happen); after the restart
Telegram hands the batch out again (its offset was never confirmed) and each update is stored
once. On SQLite and PostgreSQL, with the parse process `hub serve` really uses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from hub.arrivals import arrivals_path
from hub.storage.db import Database
from hub.storage.tables import Message, SpoolEntry
from tests.support.services import free_port
from tests.support.telegram_api import TelegramApi

HUB = [sys.executable, "-m", "hub.cli"]
CHATS = (7001, 7002, 7003)


def config(tmp_path: Path, db_url: str, api: TelegramApi) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f"""
[hub]
data_dir = "{tmp_path / 'data'}"
secret_key = "sigkill-test"
[database]
url = "{db_url}"
migrate_on_start = false
[smtp]
enabled = false
[telegram]
token = "{api.token}"
mode = "polling"
api_base_url = "{api.url}"
poll_seconds = 2
""")
    return path


async def serve(cwd: Path, conf: Path) -> subprocess.Popen[bytes]:
    """`hub serve` in a session of its own, so a kill reaches its parse process too (a crash
    of the machine's process, not of one thread); its output goes to a file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_HTTP_PORT=str(free_port()), HUB_CONFIG=str(conf))
    out = cwd / "serve.out"
    start = out.stat().st_size if out.exists() else 0
    with open(out, "ab") as stdout, open(cwd / "serve.log", "a") as log:
        process = subprocess.Popen([*HUB, "serve"], cwd=cwd, env=env, stdout=stdout,
                                   stderr=log, start_new_session=True)

    async def listening() -> bool:
        assert process.poll() is None, (cwd / "serve.log").read_text()[-3000:]
        return b"listening on http://" in out.read_bytes()[start:]

    await wait_until(listening, timeout=60)
    return process


async def ended(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send `sig` to the process's session and wait for it to end."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    await asyncio.to_thread(process.wait, 30)


async def stored(url: str) -> tuple[list[str], list[str]]:
    """(provider ids of the inbound messages, spool dedupe keys)."""
    db = Database(url)
    try:
        async with db.read() as session:
            ids = list(await session.scalars(
                select(Message.provider_id).where(Message.direction == "inbound")))
            keys = list(await session.scalars(select(SpoolEntry.dedupe_key)))
    finally:
        await db.dispose()
    return [str(i) for i in ids], [str(k) for k in keys]


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def spool_locked(url: str) -> AsyncIterator[None]:
    """No one can write to the spool meanwhile (readers still can)."""
    if url.startswith("sqlite"):
        # The database's one write lock, and that of the file `hub serve` commits arrivals to
        # while its work process writes the database (hub.arrivals).
        files = [url.split("///", 1)[1], str(arrivals_path(url))]
        conns = [sqlite3.connect(path, isolation_level=None) for path in files]
        for conn in conns:
            conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            for conn in conns:
                conn.execute("ROLLBACK")
                conn.close()
        return
    engine = create_async_engine(url)
    try:
        async with engine.connect() as pg:
            await _lock(pg)
            yield
            await pg.rollback()
    finally:
        await engine.dispose()


async def _lock(pg: AsyncConnection) -> None:
    await pg.begin()
    await pg.execute(text("LOCK TABLE inbound_spool IN SHARE ROW EXCLUSIVE MODE"))


def push_batch(api: TelegramApi, word: str) -> list[int]:
    return [api.push_message(chat, f"{word} from {chat}")["update_id"] for chat in CHATS]


async def test_a_batch_served_but_not_committed_is_read_again_and_stored_once(
        tmp_path: Path, db_url: str, telegram_api: TelegramApi) -> None:
    api = telegram_api
    conf = config(tmp_path, db_url, api)
    first = await serve(tmp_path, conf)
    try:
        push_batch(api, "Before")  # committed and confirmed, as usual

        async def before_stored() -> bool:
            return not api.pending and len((await stored(db_url))[0]) == len(CHATS)

        await wait_until(before_stored)
        async with spool_locked(db_url):
            batch = push_batch(api, "During")

            async def served() -> bool:
                return any(set(batch) <= set(ids) for ids in api.served)
            await wait_until(served)
            await asyncio.sleep(0.3)  # the hub is at its spool put, which cannot commit
            await ended(first, signal.SIGKILL)
        # Dead before its commit: nothing of the batch is stored, nor confirmed to Telegram.
        ids, keys = await stored(db_url)
        assert len(ids) == len(CHATS) and not {f"update:{u}" for u in batch} & set(keys)
        assert [u["update_id"] for u in api.pending] == batch
    finally:
        await ended(first, signal.SIGKILL)

    second = await serve(tmp_path, conf)
    try:
        async def all_stored() -> bool:
            return not api.pending and len((await stored(db_url))[0]) >= 2 * len(CHATS)

        await wait_until(all_stored)
        await asyncio.sleep(0.5)  # nothing more comes
        ids, keys = await stored(db_url)
        assert len(ids) == len(set(ids)) == 2 * len(CHATS)
        assert len(keys) == len(set(keys)) == 2 * len(CHATS)
        assert {f"update:{u}" for u in batch} <= set(keys)
    finally:
        try:
            await ended(second, signal.SIGTERM)
        finally:
            await ended(second, signal.SIGKILL)  # whatever a slow stop left
