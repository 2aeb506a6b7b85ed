"""Reply -> outbox -> job -> adapter send -> delivery status, in embedded mode and on RQ."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import select

from hub.adapters.base import Capability
from hub.app import Hub, set_worker_hub
from hub.config import Settings
from hub.jobs import InProcessJobs, RQJobs
from hub.model import utcnow
from hub.outbound import outbox_id_for, queue_outbound
from hub.storage.tables import Conversation, DeliveryEvent, Message, OutboxItem
from hub.workers.delivery import (
    AUTOMATIC_HOLD_SECONDS,
    INTAKE_FIRST_SECONDS,
    backoff_seconds,
    deliver_async,
)
from hub.workers.maintenance import sweep_outbox
from tests.support.adapter import RecordingAdapter, inbound
from tests.support.services import RedisServer


async def reply(hub: Hub, body: str = "We will fix it this week.") -> tuple[int, int]:
    """A citizen message, then a staff reply committed with its outbox row: (message, outbox)."""
    accepted = await hub.intake.accept(inbound())
    async with hub.db.transaction() as session:
        conversation = await session.get_one(Conversation, accepted.conversation_id)
        message = await queue_outbound(session, conversation, body)
        outbox_id = await outbox_id_for(session, message.id)
    return message.id, outbox_id


async def outbox(hub: Hub, outbox_id: int) -> OutboxItem:
    async with hub.db.read() as session:
        return await session.get_one(OutboxItem, outbox_id)


async def message(hub: Hub, message_id: int) -> Message:
    async with hub.db.read() as session:
        return await session.get_one(Message, message_id)


async def test_embedded_reply_is_sent_and_its_status_recorded(hub: Hub,
                                                              adapter: RecordingAdapter) -> None:
    message_id, outbox_id = await reply(hub)
    hub.jobs.submit_delivery([outbox_id])
    await hub.jobs.drain()
    assert [m.body for m in adapter.sent] == ["We will fix it this week."]
    assert adapter.sent[0].to == "+15551230001"
    item, sent = await outbox(hub, outbox_id), await message(hub, message_id)
    assert item.state == "sent" and item.attempts == 1
    assert sent.delivery_status == "sent"
    assert sent.provider_id == f"TEST-{item.idempotency_key}"
    async with hub.db.read() as session:
        events = list(await session.scalars(select(DeliveryEvent.status)))
    assert events == ["sent"]


async def test_a_job_that_runs_twice_sends_once(hub: Hub, adapter: RecordingAdapter) -> None:
    _, outbox_id = await reply(hub)
    outcomes = await asyncio.gather(*(deliver_async(hub, outbox_id) for _ in range(5)))
    assert sorted(outcomes) == ["sent", "skipped", "skipped", "skipped", "skipped"]
    assert await deliver_async(hub, outbox_id) == "skipped"
    assert len(adapter.sent) == 1


async def test_a_send_is_claimed_only_once_the_spool_backlog_here_is_worked(
        hub: Hub, adapter: RecordingAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    _, outbox_id = await reply(hub)
    worked = asyncio.Event()
    asked: list[float] = []

    async def idle(within: float) -> None:
        asked.append(within)
        await worked.wait()

    monkeypatch.setattr(hub.spool_worker, "idle", idle)
    sending = asyncio.create_task(deliver_async(hub, outbox_id))
    await asyncio.sleep(0.2)
    assert adapter.sent == [] and (await outbox(hub, outbox_id)).attempts == 0  # not claimed
    worked.set()
    assert await sending == "sent" and asked == [INTAKE_FIRST_SECONDS]


async def test_what_the_intake_queued_waits_for_the_backlog_without_holding_a_slot(
        hub: Hub, adapter: RecordingAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    """An acknowledgment waits for the spool backlog it came with (up to
    AUTOMATIC_HOLD_SECONDS) before it takes a send slot: a staff reply queued behind two of
    them, with one slot, is sent while they wait."""
    automatic = [(await reply(hub, f"acknowledgment {i}"))[1] for i in range(2)]
    _, staff = await reply(hub, "staff reply")
    worked = asyncio.Event()
    asked: list[float] = []

    async def idle(within: float) -> None:
        asked.append(within)
        if within == AUTOMATIC_HOLD_SECONDS:
            await worked.wait()

    monkeypatch.setattr(hub.spool_worker, "idle", idle)
    jobs = InProcessJobs(hub.delivery.deliver_one, concurrency=1,
                         before_slot=hub.delivery.hold_if_automatic)
    hub.delivery.queued_by_intake(automatic)
    jobs.submit_delivery([*automatic, staff])
    for _ in range(200):
        if adapter.sent:
            break
        await asyncio.sleep(0.05)
    assert [m.body for m in adapter.sent] == ["staff reply"]
    assert [(await outbox(hub, i)).attempts for i in automatic] == [0, 0]  # not claimed
    worked.set()
    await jobs.drain()
    assert sorted(m.body for m in adapter.sent) == ["acknowledgment 0", "acknowledgment 1",
                                                     "staff reply"]
    assert asked.count(AUTOMATIC_HOLD_SECONDS) == 2 and asked.count(INTAKE_FIRST_SECONDS) == 3


async def test_the_intakes_acknowledgment_is_held_in_embedded_mode(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = RecordingAdapter(capabilities=Capability.DELIVERY_STATUS | Capability.ACKNOWLEDGE)
    hub = Hub(settings, adapters=[adapter])
    await hub.prepare()
    try:
        asked: list[float] = []

        async def idle(within: float) -> None:
            asked.append(within)

        monkeypatch.setattr(hub.spool_worker, "idle", idle)
        assert (await hub.intake.accept(inbound())).new_conversation
        await hub.jobs.drain()
        assert len(adapter.sent) == 1 and adapter.sent[0].automatic  # the acknowledgment
        assert asked == [AUTOMATIC_HOLD_SECONDS, INTAKE_FIRST_SECONDS]  # before its slot, then
    finally:
        await hub.stop()


async def test_transient_failures_retry_with_backoff_then_send(hub: Hub,
                                                               adapter: RecordingAdapter) -> None:
    adapter.fail_transient(2)
    _, outbox_id = await reply(hub)
    assert await deliver_async(hub, outbox_id) == "retry"
    item = await outbox(hub, outbox_id)
    assert item.state == "pending" and item.attempts == 1
    assert item.last_error and "provider busy" in item.last_error
    assert item.next_attempt_at > utcnow()
    assert await deliver_async(hub, outbox_id) == "skipped"  # not due yet
    for _ in range(2):
        await asyncio.sleep(max(0.0, (item.next_attempt_at - utcnow()).total_seconds()) + 0.01)
        await sweep_outbox(hub)
        await hub.jobs.drain()
        item = await outbox(hub, outbox_id)
    assert item.state == "sent" and item.attempts == 3
    assert len(adapter.sent) == 1 and adapter.attempts == 3


async def test_permanent_failure_goes_to_dead_letter(hub: Hub, adapter: RecordingAdapter) -> None:
    adapter.fail_permanent()
    message_id, outbox_id = await reply(hub)
    assert await deliver_async(hub, outbox_id) == "dead"
    item, failed = await outbox(hub, outbox_id), await message(hub, message_id)
    assert item.state == "dead" and item.last_error and "recipient rejected" in item.last_error
    assert failed.delivery_status == "failed"
    await sweep_outbox(hub)
    await hub.jobs.drain()
    assert adapter.attempts == 1  # the dead letter is never retried by itself


async def test_too_many_transient_failures_go_to_dead_letter(
        settings_data: dict[str, dict[str, Any]], adapter: RecordingAdapter) -> None:
    settings_data["outbox"]["max_attempts"] = 2
    settings_data["outbox"]["backoff_base_seconds"] = 0
    hub = Hub(Settings.model_validate(settings_data), adapters=[adapter])
    await hub.prepare()
    try:
        adapter.fail_transient(10)
        _, outbox_id = await reply(hub)
        assert await deliver_async(hub, outbox_id) == "retry"
        assert await deliver_async(hub, outbox_id) == "dead"
        assert (await outbox(hub, outbox_id)).state == "dead"
    finally:
        await hub.stop()


def test_backoff_grows_exponentially_with_bounded_jitter(settings: Settings) -> None:
    policy = settings.outbox.model_copy(update={"backoff_base_seconds": 10,
                                                "backoff_max_seconds": 1000,
                                                "backoff_jitter": 0.2})
    for attempts, base in [(1, 10), (2, 20), (3, 40), (8, 1000), (20, 1000)]:
        values = [backoff_seconds(attempts, policy) for _ in range(200)]
        assert all(base * 0.8 <= v <= base * 1.2 for v in values)
        assert max(values) - min(values) > 0  # jitter spreads retries out


def _rq_settings(settings_data: dict[str, dict[str, Any]], url: str) -> Settings:
    settings_data["redis"] = {"url": url, "queue_prefix": "hubtest"}
    return Settings.model_validate(settings_data)


def _work(settings: Settings, adapter: RecordingAdapter) -> None:
    """Run a real RQ SimpleWorker until the queue is empty, with its own hub (like `hub worker`)."""
    worker_hub = Hub(settings, adapters=[adapter])
    set_worker_hub(worker_hub)
    try:
        jobs = worker_hub.jobs
        assert isinstance(jobs, RQJobs)
        SimpleWorker([jobs.queue], connection=Redis.from_url(settings.redis.url)).work(
            burst=True)
    finally:
        set_worker_hub(None)
        worker_hub.run_sync(worker_hub.stop())


def test_rq_reply_is_sent_by_a_worker(settings_data: dict[str, dict[str, Any]],
                                      redis_url: str, adapter: RecordingAdapter) -> None:
    settings = _rq_settings(settings_data, redis_url)
    api = Hub(settings, adapters=[adapter])

    async def reply_and_enqueue() -> tuple[int, int]:
        await api.prepare()
        message_id, outbox_id = await reply(api)
        api.jobs.submit_delivery([outbox_id])
        await api.jobs.drain()
        return message_id, outbox_id

    message_id, outbox_id = api.run_sync(reply_and_enqueue())
    assert len(adapter.sent) == 0 and api.jobs.queue.count == 1  # type: ignore[attr-defined]
    _work(settings, adapter)
    assert [m.body for m in adapter.sent] == ["We will fix it this week."]
    assert api.run_sync(message(api, message_id)).delivery_status == "sent"
    assert api.run_sync(outbox(api, outbox_id)).state == "sent"
    api.run_sync(api.stop())


def test_redis_outage_delays_a_reply_and_loses_none(settings_data: dict[str, dict[str, Any]],
                                                   tmp_path: Path,
                                                   adapter: RecordingAdapter) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    settings = _rq_settings(settings_data, redis.url)
    api = Hub(settings, adapters=[adapter])
    try:
        api.run_sync(api.prepare())
        redis.stop()  # Redis goes away before the staff member replies

        async def reply_while_down() -> int:
            _, outbox_id = await reply(api)
            api.jobs.submit_delivery([outbox_id])
            await api.jobs.drain()
            return outbox_id

        outbox_id = api.run_sync(reply_while_down())  # committed although enqueue failed
        assert api.run_sync(outbox(api, outbox_id)).state == "pending"
        redis.start()  # back, empty: the job that was never enqueued is nowhere in Redis
        assert api.jobs.queue.count == 0  # type: ignore[attr-defined]
        assert api.run_sync(sweep_outbox(api)) == 1
        _work(settings, adapter)
        assert len(adapter.sent) == 1
        # Later sweeps and workers find nothing more to do: delivered exactly once.
        api.run_sync(sweep_outbox(api))
        _work(settings, adapter)
        assert len(adapter.sent) == 1
        assert api.run_sync(outbox(api, outbox_id)).state == "sent"
    finally:
        api.run_sync(api.stop())
        redis.stop()
