"""Batched delivery: one claiming statement takes only what is due (backoff and live leases
respected), two workers given the same rows send each once, concurrent deliveries share their
transactions, and on Redis an id whose job is waiting is not enqueued a second time.

Both database backends; nothing here depends on timings.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

from redis import Redis
from sqlalchemy import select, update

from hub.app import Hub
from hub.config import Settings
from hub.jobs import RQJobs
from hub.model import utcnow
from hub.storage.tables import OutboxItem
from hub.workers import claims
from hub.workers.delivery import deliver_async
from hub.workers.maintenance import sweep_outbox
from tests.support.adapter import RecordingAdapter
from tests.workers.test_delivery import _rq_settings, _work, outbox, reply


async def _set(hub: Hub, outbox_id: int, **values: Any) -> None:
    async with hub.db.transaction() as session:
        await session.execute(update(OutboxItem).where(OutboxItem.id == outbox_id)
                              .values(**values))


async def test_a_batch_claim_takes_only_what_is_due(hub: Hub) -> None:
    now = utcnow()
    ago, ahead = now - timedelta(seconds=30), now + timedelta(seconds=600)
    due, backing_off, lapsed, held, sent, dead = [(await reply(hub))[1] for _ in range(6)]
    await _set(hub, due, next_attempt_at=ago)
    await _set(hub, backing_off, next_attempt_at=ahead, attempts=1)  # waits out its backoff
    await _set(hub, lapsed, state="sending", attempts=1, locked_until=ago)  # its worker died
    await _set(hub, held, state="sending", attempts=1, locked_until=ahead)  # being sent
    await _set(hub, sent, state="sent", attempts=1)
    await _set(hub, dead, state="dead", attempts=8)
    everything = [due, backing_off, lapsed, held, sent, dead, due]  # `due` asked for twice
    lease = timedelta(seconds=120)
    async with hub.db.write_connection() as conn:
        claimed = await claims.claim(conn, everything, now, lease)
        await claims.load(conn, claimed)
    assert sorted(item.outbox_id for item in claimed) == sorted([due, lapsed])
    assert {item.outbox_id: item.attempts for item in claimed} == {due: 1, lapsed: 2}
    assert all(item.to == "+15551230001" and item.body for item in claimed)
    for outbox_id in (due, lapsed):
        row = await outbox(hub, outbox_id)
        assert row.state == "sending" and row.locked_until == now + lease
    async with hub.db.write_connection() as conn:  # claimed now: not again
        assert await claims.claim(conn, everything, now, lease) == []
    assert await deliver_async(hub, backing_off) == "skipped"


async def test_two_workers_given_the_same_rows_send_each_once(
        settings: Settings, hub: Hub, adapter: RecordingAdapter) -> None:
    ids = [(await reply(hub, f"reply {i}"))[1] for i in range(40)]
    other_adapter = RecordingAdapter()
    other = Hub(settings, adapters=[other_adapter])  # a second worker: its own engine
    try:
        first, second = ids[:], ids[:]
        random.Random(7).shuffle(second)
        outcomes = await asyncio.gather(hub.delivery.deliver(first),
                                        other.delivery.deliver(second))
    finally:
        await other.stop()
    assert sorted(o for o in (*outcomes[0], *outcomes[1]) if o != "skipped") == ["sent"] * 40
    keys = [m.idempotency_key for m in (*adapter.sent, *other_adapter.sent)]
    assert len(keys) == 40 and len(set(keys)) == 40  # the sink saw each reply once
    async with hub.db.read() as session:
        rows = (await session.execute(select(OutboxItem.state, OutboxItem.attempts))).all()
    assert set(rows) == {("sent", 1)}


async def test_concurrent_deliveries_share_their_transactions(
        hub: Hub, adapter: RecordingAdapter) -> None:
    ids = [(await reply(hub, f"reply {i}"))[1] for i in range(32)]
    transactions = 0
    real = hub.db.write_connection

    def counting() -> Any:
        nonlocal transactions
        transactions += 1
        return real()

    hub.db.write_connection = counting  # type: ignore[method-assign]
    hub.jobs.submit_delivery(ids)
    await hub.jobs.drain()
    assert len(adapter.sent) == 32
    # Each delivery alone would take two (claim, outcome): 64.
    assert transactions <= 16


def test_an_id_whose_job_waits_is_not_enqueued_again(
        settings_data: dict[str, dict[str, Any]], redis_url: str,
        adapter: RecordingAdapter) -> None:
    settings = _rq_settings(settings_data, redis_url)
    api = Hub(settings, adapters=[adapter])
    jobs = api.jobs
    assert isinstance(jobs, RQJobs)
    try:
        async def reply_and_sweep() -> tuple[int, int]:
            await api.prepare()
            _, outbox_id = await reply(api)
            jobs.submit_delivery([outbox_id])  # as the API does right after the commit
            await jobs.drain()
            return outbox_id, await sweep_outbox(api)  # the sweeper finds the row pending

        outbox_id, handed = api.run_sync(reply_and_sweep())
        assert handed == 1 and jobs.queue.count == 1  # with Redis once, not twice
        _work(settings, adapter)
        assert len(adapter.sent) == 1 and adapter.attempts == 1
        assert api.run_sync(outbox(api, outbox_id)).state == "sent"
    finally:
        api.run_sync(api.stop())


def test_a_retry_is_enqueued_again_once_its_job_was_taken(
        settings_data: dict[str, dict[str, Any]], redis_url: str,
        adapter: RecordingAdapter) -> None:
    settings = _rq_settings(settings_data, redis_url)
    api = Hub(settings, adapters=[adapter])
    jobs = api.jobs
    assert isinstance(jobs, RQJobs)
    adapter.fail_transient(1)
    try:
        async def reply_and_submit() -> int:
            await api.prepare()
            _, outbox_id = await reply(api)
            jobs.submit_delivery([outbox_id])
            await jobs.drain()
            return outbox_id

        outbox_id = api.run_sync(reply_and_submit())
        _work(settings, adapter)  # the first attempt fails: a retry after its backoff
        item = api.run_sync(outbox(api, outbox_id))
        assert item.state == "pending" and item.attempts == 1
        assert Redis.from_url(redis_url).zcard(jobs.queued_key) == 0  # the worker took it
        api.run_sync(_set(api, outbox_id, next_attempt_at=utcnow() - timedelta(seconds=1)))
        assert api.run_sync(sweep_outbox(api)) == 1 and jobs.queue.count == 1
        _work(settings, adapter)
        assert api.run_sync(outbox(api, outbox_id)).state == "sent"
        assert len(adapter.sent) == 1 and adapter.attempts == 2
    finally:
        api.run_sync(api.stop())


def test_a_job_lost_from_redis_is_enqueued_again(redis_url: str) -> None:
    jobs = RQJobs(redis_url, "hubtest", lost_after=60)
    try:
        assert asyncio.run(jobs.enqueue_delivery([7, 8])) == 2
        assert asyncio.run(jobs.enqueue_delivery([7, 8, 9])) == 3
        assert sum(len(job.args[0]) for job in jobs.queue.get_jobs()) == 3  # 9 only, the 2nd time
        # Job of 7 enqueued longer ago than the outbox's stale time: taken as lost.
        Redis.from_url(redis_url).zadd(jobs.queued_key, {"7": 0})
        asyncio.run(jobs.enqueue_delivery([7, 8]))
        assert sorted(i for job in jobs.queue.get_jobs() for i in job.args[0]) == [7, 7, 8, 9]
    finally:
        jobs.close()
