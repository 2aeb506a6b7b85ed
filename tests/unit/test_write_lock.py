"""SQLite's in-process write lock: one holder at a time, first come first served, an urgent
writer (the spool insert a sender's 250 waits for) ahead of every waiting one; a waiter
cancelled at any moment never leaves the lock held."""

from __future__ import annotations

import asyncio

from hub.storage.db import WriteLock


async def test_one_holder_and_urgent_writers_go_first() -> None:
    lock, order, inside = WriteLock(), [], 0

    async def writer(name: str, urgent: bool = False) -> None:
        nonlocal inside
        async with lock.hold(urgent=urgent):
            inside += 1
            assert inside == 1
            order.append(name)
            await asyncio.sleep(0.01)
            inside -= 1

    first = asyncio.create_task(writer("first"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(writer(f"other{i}")) for i in range(3)]
    await asyncio.sleep(0)
    urgent = asyncio.create_task(writer("urgent", urgent=True))
    await asyncio.gather(first, urgent, *waiting)
    assert order == ["first", "urgent", "other0", "other1", "other2"]


async def test_cancelled_waiters_never_keep_the_lock() -> None:
    lock = WriteLock()
    for round_no in range(50):
        async def hold(urgent: bool = round_no % 2 == 0) -> None:
            async with lock.hold(urgent=urgent):
                await asyncio.sleep(0.001)

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(hold()) for _ in range(4)]
        await asyncio.sleep(0.001 * (round_no % 3))
        for waiter in waiters[::2]:
            waiter.cancel()
        await asyncio.gather(holder, *waiters, return_exceptions=True)
    async with asyncio.timeout(1):
        async with lock.hold():
            pass
