"""Background jobs: RQ on Redis when `[redis] url` is set, otherwise tasks on the hub's own loop.

Both run the same job functions (hub.workers.*). Enqueueing never raises into the caller: the
outbox row is already committed, and the sweeper re-enqueues anything a Redis outage dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

log = logging.getLogger(__name__)

DELIVERY_QUEUE = "delivery"
DELIVER_JOB = "hub.workers.delivery.deliver"


class Jobs(Protocol):
    def submit_delivery(self, outbox_ids: Sequence[int]) -> None:
        """Schedule delivery without waiting (called right after a commit)."""
        ...

    async def enqueue_delivery(self, outbox_ids: Sequence[int]) -> int:
        """Schedule delivery; return how many were handed over."""
        ...

    async def drain(self) -> None: ...


class InProcessJobs:
    """Embedded mode: delivery runs as tasks on the hub's loop (provider calls in threads)."""

    def __init__(self, deliver: Callable[[int], Awaitable[object]], concurrency: int = 8) -> None:
        self._deliver = deliver
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._queued: set[int] = set()  # ids with a task waiting or running

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

    async def _run(self, outbox_id: int) -> None:
        try:
            async with self._slots:
                await self._deliver(outbox_id)
        except Exception:
            log.exception("delivery job for outbox item %s failed", outbox_id)
        finally:
            self._queued.discard(outbox_id)

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class RQJobs:
    """Distributed mode: jobs go to Redis for `hub worker` processes."""

    def __init__(self, redis_url: str, prefix: str = "hub") -> None:
        from redis import Redis
        from rq import Queue

        # Short timeouts: a Redis outage must not hold up the request that committed a reply.
        self._redis = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.queue = Queue(f"{prefix}-{DELIVERY_QUEUE}", connection=self._redis)
        self._pending: set[asyncio.Task[int]] = set()

    def _enqueue_sync(self, outbox_ids: Sequence[int]) -> int:
        done = 0
        for outbox_id in outbox_ids:
            self.queue.enqueue(DELIVER_JOB, outbox_id, result_ttl=0, failure_ttl=86400)
            done += 1
        return done

    async def enqueue_delivery(self, outbox_ids: Sequence[int]) -> int:
        if not outbox_ids:
            return 0
        try:
            return await asyncio.to_thread(self._enqueue_sync, outbox_ids)
        except Exception as exc:
            log.warning("could not enqueue %d deliveries (%s); the sweeper will retry",
                        len(outbox_ids), type(exc).__name__)
            return 0

    def submit_delivery(self, outbox_ids: Sequence[int]) -> None:
        task = asyncio.get_running_loop().create_task(self.enqueue_delivery(list(outbox_ids)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def close(self) -> None:
        self._redis.close()
