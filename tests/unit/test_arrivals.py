"""SQLite's arrivals file (hub.arrivals): with a work process writing the main file, `hub serve`
commits what arrives to a file of its own; the spool worker moves it into the spool. Nothing is
lost on the way, nothing is spooled twice, and a resend is recognised before and after the move.

SQLite only: PostgreSQL's serving process writes the spool itself (its rows lock apart)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from hub.app import Hub
from hub.arrivals import Arrivals, ArrivalsMover, arrivals_path
from hub.spool import Spool
from tests.unit.test_spool import entries, inbound_texts, item, worker


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "hub.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


def serving_spool(hub: Hub) -> Spool:
    spool = Spool(hub.db)
    spool.arrivals = Arrivals(hub.db.url)
    return spool


async def test_an_arrival_is_on_disk_apart_and_the_worker_moves_it_into_the_spool(
        hub: Hub, db_url: str) -> None:
    assert arrivals_path("postgresql+asyncpg://x@localhost/hub") is None
    spool = serving_spool(hub)
    receipt = await spool.put(item("+15550000001", "pothole"))
    assert not receipt.duplicate
    assert await entries(hub) == []  # not in the main file: the 250 waited for no one there
    assert arrivals_path(db_url) is not None and arrivals_path(db_url).exists()  # type: ignore[union-attr]

    assert await worker(hub, Spool(hub.db)).drain() == 1
    (entry,) = await entries(hub)
    assert (entry.state, entry.channel) == ("done", "sms")
    assert await inbound_texts(hub) == ["pothole"]
    await spool.close()


async def test_a_resend_is_known_while_it_waits_and_after_it_moved(hub: Hub) -> None:
    spool = serving_spool(hub)
    assert not (await spool.put(item("+15550000001", "pothole"))).duplicate
    assert (await spool.put(item("+15550000001", "pothole"))).duplicate  # still waiting here

    assert await worker(hub, Spool(hub.db)).drain() == 1
    assert (await spool.put(item("+15550000001", "pothole"))).duplicate  # in the spool now
    assert await worker(hub, Spool(hub.db)).drain() == 0
    assert len(await entries(hub)) == 1 and await inbound_texts(hub) == ["pothole"]
    await spool.close()


async def test_a_burst_with_copies_stores_each_item_once(hub: Hub) -> None:
    spool = serving_spool(hub)
    items = [item(f"+1555000{i:04d}", "light out") for i in range(40)]
    items += [item("+15550000007", "light out")] * 3
    receipts = await asyncio.gather(*(spool.put(i) for i in items))
    assert sum(not r.duplicate for r in receipts) == 40
    assert await worker(hub, Spool(hub.db)).drain() == 40
    assert len(await entries(hub)) == 40 and len(await inbound_texts(hub)) == 40
    await spool.close()


async def test_a_crash_between_the_move_and_the_forget_spools_the_items_once(hub: Hub) -> None:
    spool = serving_spool(hub)
    for text in ("first", "second"):
        await spool.put(item("+15550000001", text))
    crashed = ArrivalsMover(hub.db.url)
    assert await hub.db.write_in_thread(crashed.move)  # committed; the process dies here
    crashed.close()
    assert len(await entries(hub)) == 2

    assert await worker(hub, Spool(hub.db)).drain() == 2  # moves both again: known, no copy
    assert len(await entries(hub)) == 2
    assert await inbound_texts(hub) == ["first", "second"]
    await spool.close()
