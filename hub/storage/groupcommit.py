"""Group commit: concurrent units of work share one transaction and one commit.

SQLite takes one writer at a time, so under concurrent load every message would otherwise wait
for the commits of all the messages before it. Here, whatever arrived while a transaction was
running goes into the next one together. Nobody is answered before their unit is committed;
if any unit of a batch fails, the batch is rolled back and each unit runs again on its own, so
one bad message never costs the others anything but a retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from hub.storage.db import Database

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]


class GroupCommit:
    def __init__(self, db: Database, max_batch: int = 64) -> None:
        self._db = db
        self._max_batch = max_batch
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
            if len(batch) > 1 and await self._together(batch):
                continue
            for work, future in batch:
                await self._alone(work, future)

    async def _together(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> bool:
        try:
            async with self._db.transaction() as session:
                results = [await work(session) for work, _ in batch]
        except Exception:
            return False  # rolled back: each unit runs again alone
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        return True

    async def _alone(self, work: Work, future: asyncio.Future[Any]) -> None:
        try:
            async with self._db.transaction() as session:
                result = await work(session)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
