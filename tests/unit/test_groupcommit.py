"""Group commit: concurrent work shares a transaction; one failing unit costs the others nothing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.app import Hub
from hub.storage.groupcommit import GroupCommit
from hub.storage.tables import Contact


async def test_units_commit_together_and_a_failing_one_alone(hub: Hub) -> None:
    group = GroupCommit(hub.db)
    transactions = 0
    real = hub.db.transaction

    def counting():  # type: ignore[no-untyped-def]
        nonlocal transactions
        transactions += 1
        return real()

    hub.db.transaction = counting  # type: ignore[method-assign]

    def unit(i: int):  # type: ignore[no-untyped-def]
        async def work(session: AsyncSession) -> int:
            if i == 7:
                raise ValueError("unit 7 is broken")
            session.add(Contact(name=f"c{i}"))
            await session.flush()
            return i
        return work

    results = await asyncio.gather(*(group.run(unit(i)) for i in range(20)),
                                   return_exceptions=True)
    hub.db.transaction = real  # type: ignore[method-assign]
    assert next(r for r in results if isinstance(r, Exception)).args == ("unit 7 is broken",)
    assert sorted(r for r in results if isinstance(r, int)) == [i for i in range(20) if i != 7]
    async with hub.db.read() as session:
        names = set(await session.scalars(select(Contact.name)))
        count = await session.scalar(select(func.count()).select_from(Contact))
    assert count == 19 and "c7" not in names
    assert transactions == 21  # one batch of all twenty, rolled back, then each alone


async def test_batches_form_under_concurrency(hub: Hub) -> None:
    group = GroupCommit(hub.db)
    sizes: list[int] = []
    real = group._together

    async def spy(batch):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        return await real(batch)

    group._together = spy  # type: ignore[method-assign]

    async def work(session: AsyncSession) -> None:
        session.add(Contact(name="x"))

    await asyncio.gather(*(group.run(work) for _ in range(30)))
    assert sizes and max(sizes) > 1
    with pytest.raises(ZeroDivisionError):
        async def bad(session: AsyncSession) -> None:
            raise ZeroDivisionError
        await group.run(bad)
