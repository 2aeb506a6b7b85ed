"""In-process jobs (embedded mode): an outbox id already waiting for a delivery slot is not queued
a second time when the sweeper finds its row again; once its job ended, it can be queued again."""

from __future__ import annotations

import asyncio

from hub.jobs import InProcessJobs


async def test_an_id_waiting_for_a_slot_is_not_queued_twice() -> None:
    calls: list[int] = []
    release = asyncio.Event()

    async def deliver(outbox_id: int) -> None:
        calls.append(outbox_id)
        if outbox_id == 1:
            await release.wait()  # holds the only slot

    jobs = InProcessJobs(deliver, concurrency=1)
    jobs.submit_delivery([1, 2])
    await asyncio.sleep(0)
    jobs.submit_delivery([2, 2, 1])  # the sweeper's rounds while 1 runs and 2 waits
    release.set()
    await jobs.drain()
    assert calls == [1, 2]
    jobs.submit_delivery([2])  # due again later (a retry): a new job
    await jobs.drain()
    assert calls == [1, 2, 2]


async def test_a_failing_job_frees_its_id() -> None:
    calls: list[int] = []

    async def deliver(outbox_id: int) -> None:
        calls.append(outbox_id)
        raise RuntimeError("adapter bug")

    jobs = InProcessJobs(deliver)
    jobs.submit_delivery([7])
    await jobs.drain()
    jobs.submit_delivery([7])
    await jobs.drain()
    assert calls == [7, 7]
