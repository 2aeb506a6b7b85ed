"""Background jobs: RQ on Redis when `[redis] url` is set, otherwise tasks on the hub's own loop.

Both run the same delivery code (hub.workers.delivery). Enqueueing never raises into the caller:
the outbox row is already committed, and the sweeper re-enqueues anything a Redis outage dropped.

Each outbox id is handed over once while it waits: in-process, an id already waiting or running
is not queued again; on Redis, a sorted set beside the queue holds the ids whose job is waiting
(with the time it was enqueued), so the sweeper does not enqueue them a second time (unless that
job is older than the outbox's stale time: then it counts as lost). Ids submitted while an
enqueue is on its way to Redis share the next job, so a burst of replies costs a few jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

log = logging.getLogger(__name__)

DELIVERY_QUEUE = "delivery"
DELIVER_JOB = "hub.workers.delivery.deliver"  # one id (jobs enqueued by earlier versions)
DELIVER_MANY_JOB = "hub.workers.delivery.deliver_many"
JOB_IDS = 50  # outbox ids per RQ job at most


class Jobs(Protocol):
    def submit_delivery(self, outbox_ids: Sequence[int]) -> None:
        """Schedule delivery without waiting (called right after a commit)."""
        ...

    async def enqueue_delivery(self, outbox_ids: Sequence[int]) -> int:
        """Schedule delivery; return how many were handed over (an id whose job is already
        waiting counts: it is with the job queue)."""
        ...

    async def drain(self) -> None: ...


class InProcessJobs:
    """Delivery as tasks on this process's loop (provider calls in threads): every job in
    embedded mode, and in a `hub worker` the ids its RQ jobs hand over."""

    def __init__(self, deliver: Callable[[int], Awaitable[object]], concurrency: int = 8, *,
                 before_slot: Callable[[int], Awaitable[object]] | None = None) -> None:
        self._deliver = deliver
        # Waits that must not hold a slot: a held acknowledgment would keep a staff reply out.
        self._before_slot = before_slot
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._queued: set[int] = set()  # ids with a task waiting or running
        self._backlog = concurrency
        self._room = asyncio.Event()

    def submit_delivery(self, outbox_ids: Sequence[int]) -> None:
        """A task per id; an id already waiting here is not queued twice (the sweeper finds
        rows that are merely waiting for a slot, and a second task would only lose the claim)."""
        for outbox_id in outbox_ids:
            if outbox_id in self._queued:
                continue
            self._queued.add(outbox_id)
            task = asyncio.get_running_loop().create_task(self._run(outbox_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def enqueue_delivery(self, outbox_ids: Sequence[int]) -> int:
        self.submit_delivery(outbox_ids)
        return len(outbox_ids)

    async def accept(self, outbox_ids: Sequence[int]) -> int:
        """Submit, then wait until no more ids wait here than run at once: a `hub worker` takes
        its next RQ job only when it has room, and leaves the rest to the other workers."""
        self.submit_delivery(outbox_ids)
        while len(self._queued) > self._backlog:
            self._room.clear()
            await self._room.wait()
        return len(outbox_ids)

    async def _run(self, outbox_id: int) -> None:
        try:
            if self._before_slot is not None:
                await self._before_slot(outbox_id)
            async with self._slots:
                await self._deliver(outbox_id)
        except Exception:
            log.exception("delivery job for outbox item %s failed", outbox_id)
        finally:
            self._queued.discard(outbox_id)
            if len(self._queued) <= self._backlog:
                self._room.set()

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class RQJobs:
    """Distributed mode: jobs go to Redis for `hub worker` processes."""

    def __init__(self, redis_url: str, prefix: str = "hub", *, lost_after: float = 120.0) -> None:
        from redis import Redis
        from rq import Queue

        # Short timeouts: a Redis outage must not hold up the request that committed a reply.
        self._redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.queue = Queue(f"{prefix}-{DELIVERY_QUEUE}", connection=self._redis)
        self.queued_key = f"{prefix}-{DELIVERY_QUEUE}:queued"  # id -> when its job was enqueued
        self.lost_after = lost_after
        self._submitted: list[int] = []
        self._flusher: asyncio.Task[None] | None = None

    def submit_delivery(self, outbox_ids: Sequence[int]) -> None:
        """Enqueue in the background; ids submitted while an enqueue is on its way go together
        into the next one."""
        self._submitted.extend(outbox_ids)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._submitted:
            outbox_ids, self._submitted = self._submitted, []
            # Just committed: no job can be waiting for them yet, so no look-up first.
            await self._hand_over(outbox_ids, fresh=True)

    async def enqueue_delivery(self, outbox_ids: Sequence[int]) -> int:
        """Enqueue the ids that have no job waiting; return how many are now with Redis."""
        return await self._hand_over(outbox_ids, fresh=False)

    async def _hand_over(self, outbox_ids: Sequence[int], *, fresh: bool) -> int:
        if not outbox_ids:
            return 0
        try:
            return await asyncio.to_thread(self._enqueue_sync, list(outbox_ids), fresh)
        except Exception as exc:
            log.warning("could not enqueue %d deliveries (%s); the sweeper will retry",
                        len(outbox_ids), type(exc).__name__)
            return 0

    def _enqueue_sync(self, outbox_ids: list[int], fresh: bool) -> int:
        from rq import Queue

        unique = list(dict.fromkeys(outbox_ids))
        now = time.time()
        todo = unique if fresh else self._without_waiting_job(unique, now)
        if todo:
            with self._redis.pipeline() as pipe:
                self.queue.enqueue_many(
                    [Queue.prepare_data(DELIVER_MANY_JOB, (todo[i:i + JOB_IDS],), result_ttl=0,
                                        failure_ttl=86400)
                     for i in range(0, len(todo), JOB_IDS)], pipeline=pipe)
                pipe.zadd(self.queued_key, dict.fromkeys(map(str, todo), now))
                # Entries of jobs that never said they ran (a worker that died first): tidy.
                pipe.zremrangebyscore(self.queued_key, "-inf", now - 10 * self.lost_after)
                pipe.execute()
        return len(unique)

    def _without_waiting_job(self, outbox_ids: list[int], now: float) -> list[int]:
        enqueued = self._redis.zmscore(self.queued_key, [str(i) for i in outbox_ids])
        return [outbox_id for outbox_id, at in zip(outbox_ids, enqueued, strict=True)
                if at is None or now - at > self.lost_after]

    def taken(self, outbox_ids: Sequence[int]) -> None:
        """A worker took the job of these ids (called in the worker, before it delivers):
        from now on the outbox row itself tells whether they are due again."""
        if outbox_ids:
            self._redis.zrem(self.queued_key, *map(str, outbox_ids))

    async def drain(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.gather(self._flusher, return_exceptions=True)

    def close(self) -> None:
        self._redis.close()
