"""Set-aside items on both databases: listing and showing failed spool items and dead outbox
items, retrying them exactly once (also under concurrent retries), the audit trail, and that a
retried outbox item is delivered once (embedded sweeper, direct job, RQ worker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import select

from hub import setaside
from hub.app import Hub, set_worker_hub
from hub.config import Settings
from hub.jobs import RQJobs
from hub.model import InboundMessage, ThreadHints, utcnow
from hub.outbound import outbox_id_for, queue_outbound
from hub.setaside import NotFound, NotRetryable, SetAsideError
from hub.spool import Spool, SpoolWorker
from hub.storage.db import Database
from hub.storage.tables import AuditEntry, Conversation, Message, OutboxItem, SpoolEntry
from hub.workers.delivery import deliver_async
from hub.workers.maintenance import sweep_outbox
from tests.support.adapter import RecordingAdapter, inbound

CHANNEL = "sms"


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # One try: a single transient failure puts an item in the dead letter, the next send works.
    settings_data["outbox"]["max_attempts"] = 1
    return settings_data


async def add_spool(db: Database, text: str, *, state: str = "failed",
                    payload: bytes | None = None, error: str = "ValueError: bad input",
                    received_at: datetime | None = None) -> int:
    """A spool row as the worker leaves it after its last failed attempt."""
    failed = state == "failed"
    async with db.transaction() as session:
        entry = SpoolEntry(
            channel=CHANNEL, dedupe_key=f"key|{text}", envelope={"via": "test"},
            payload=payload if payload is not None else json.dumps({"text": text}).encode(),
            state=state, attempts=5 if failed else 0, last_error=error if failed else None,
            received_at=received_at or utcnow())
        session.add(entry)
    return entry.id


async def dead_outbox(hub: Hub, adapter: RecordingAdapter) -> tuple[int, int]:
    """A staff reply whose one delivery try failed: (message id, outbox id), state dead."""
    accepted = await hub.intake.accept(inbound())
    async with hub.db.transaction() as session:
        conversation = await session.get_one(Conversation, accepted.conversation_id)
        message = await queue_outbound(session, conversation, "We will fix it this week.")
        outbox_id = await outbox_id_for(session, message.id)
    adapter.fail_transient(1)
    assert await deliver_async(hub, outbox_id) == "dead"
    return message.id, outbox_id


async def row(db: Database, table: type[Any], row_id: int) -> Any:
    async with db.read() as session:
        return await session.get_one(table, row_id)


async def audit_rows(db: Database) -> list[AuditEntry]:
    """The retries' audit rows (the intake writes its own, e.g. routing decisions)."""
    async with db.read() as session:
        return list(await session.scalars(
            select(AuditEntry).where(AuditEntry.action.in_(["spool.retry", "outbox.retry"]))
            .order_by(AuditEntry.id)))


# -- spool ------------------------------------------------------------------------------------

async def test_list_shows_failed_items_newest_first_with_state_and_limit(hub: Hub) -> None:
    old = await add_spool(hub.db, "old", error="RuntimeError: parser bug")
    await add_spool(hub.db, "waiting", state="pending")
    new = await add_spool(hub.db, "new")
    failed = await setaside.list_spool(hub.db)
    assert [i.id for i in failed] == [new, old]
    assert (failed[1].channel, failed[1].state, failed[1].attempts) == (CHANNEL, "failed", 5)
    assert failed[1].last_error == "RuntimeError: parser bug"
    assert failed[1].size == len(b'{"text": "old"}') and failed[1].processed_at is None
    assert [i.state for i in await setaside.list_spool(hub.db, state="pending")] == ["pending"]
    assert len(await setaside.list_spool(hub.db, state="all")) == 3
    assert [i.id for i in await setaside.list_spool(hub.db, limit=1)] == [new]
    with pytest.raises(SetAsideError, match="unknown state"):
        await setaside.list_spool(hub.db, state="lost")


async def test_show_gives_the_details_and_the_payload_start_as_safe_text(hub: Hub) -> None:
    payload = (b"Subject: \x1b[31mred\x1b[0m\r\nX: \xe2\x80\xae evil\x00\x07\r\n\r\nbody\ttab "
               + "caf\u00e9".encode() + b" \xff" + b"x" * 5000)
    spool_id = await add_spool(hub.db, "raw", payload=payload)
    item = await setaside.show_spool(hub.db, spool_id)
    assert (item.id, item.channel, item.state, item.attempts) == (spool_id, CHANNEL, "failed", 5)
    assert (item.dedupe_key, item.envelope, item.size) == ("key|raw", {"via": "test"},
                                                           len(payload))
    assert item.last_error == "ValueError: bad input" and item.received_at.tzinfo is not None
    assert item.preview_bytes == setaside.PREVIEW_BYTES
    assert item.preview.startswith("Subject: \\x1b[31mred\\x1b[0m\nX: \\u202e evil\\x00\\x07\n\n"
                                   "body\ttab caf\u00e9 \ufffdxxx")
    assert not any(ch in item.preview for ch in "\x1b\r\x00\x07\u202e")
    short = await setaside.show_spool(hub.db, spool_id, preview_bytes=9)
    assert (short.preview, short.preview_bytes) == ("Subject: ", 9)
    with pytest.raises(NotFound, match="no spool item 999"):
        await setaside.show_spool(hub.db, 999)


def test_safe_text_escapes_what_could_drive_a_terminal() -> None:
    assert setaside.safe_text("a\r\nb\rc\x9bd\u2028e") == "a\nb\\x0dc\\x9bd\\u2028e"
    assert setaside.safe_text("one\ntwo\tthree", multiline=False) == "one\\x0atwo\\x09three"
    assert setaside.safe_text("Gr\u00fc\u00dfe \u65e5\u672c") == "Gr\u00fc\u00dfe \u65e5\u672c"


async def test_retry_sets_a_failed_item_pending_once_and_audits_it(hub: Hub) -> None:
    spool_id = await add_spool(hub.db, "pothole", error="RuntimeError: parser bug")
    retried = await setaside.retry_spool(hub.db, spool_id, actor="lead@city.example")
    assert (retried.kind, retried.id, retried.previous_error, retried.previous_attempts) == (
        "spool", spool_id, "RuntimeError: parser bug", 5)
    entry = await row(hub.db, SpoolEntry, spool_id)
    assert (entry.state, entry.attempts, entry.next_attempt_at, entry.last_error) == (
        "pending", 0, None, None)
    with pytest.raises(NotRetryable, match=f"spool item {spool_id} is pending, not failed"):
        await setaside.retry_spool(hub.db, spool_id)
    with pytest.raises(NotFound, match="no spool item 999"):
        await setaside.retry_spool(hub.db, 999)
    (entry_log,) = await audit_rows(hub.db)
    assert (entry_log.actor, entry_log.action, entry_log.target_type, entry_log.target_id) == (
        "lead@city.example", "spool.retry", "spool", str(spool_id))
    assert entry_log.detail == {"bulk": False, "previous_error": "RuntimeError: parser bug",
                                "previous_attempts": 5}


def parse(payload: bytes, envelope: Mapping[str, Any], received_at: datetime) -> InboundMessage:
    text = json.loads(payload)["text"]
    return inbound("+15550000001", text, provider_id=f"spool|{text}", received_at=received_at,
                   thread=ThreadHints(continue_latest=True))


async def test_a_retried_item_is_worked_into_one_message(hub: Hub) -> None:
    spool_id = await add_spool(hub.db, "pothole")
    worker = SpoolWorker(Spool(hub.db), hub.intake, {CHANNEL: parse})
    assert await worker.drain() == 0  # set aside: the worker leaves it alone
    await setaside.retry_spool(hub.db, spool_id)
    assert await worker.drain() == 1
    assert await worker.drain() == 0
    async with hub.db.read() as session:
        assert list(await session.scalars(select(Message.body))) == ["pothole"]
    assert (await row(hub.db, SpoolEntry, spool_id)).state == "done"
    with pytest.raises(NotRetryable, match="is done, not failed"):
        await setaside.retry_spool(hub.db, spool_id)


async def test_retry_all_sets_every_failed_item_pending(hub: Hub,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setaside, "RETRY_CHUNK", 2)  # more items than one chunk
    failed = [await add_spool(hub.db, f"failed {n}") for n in range(5)]
    pending = await add_spool(hub.db, "waiting", state="pending")
    retried = await setaside.retry_all_spool(hub.db)
    assert [r.id for r in retried] == failed
    assert all(r.previous_error == "ValueError: bad input" for r in retried)
    assert await setaside.list_spool(hub.db) == []
    assert {i.id for i in await setaside.list_spool(hub.db, state="pending")} == {*failed, pending}
    log = await audit_rows(hub.db)
    assert [(a.action, a.target_id, a.detail["bulk"]) for a in log] == [
        ("spool.retry", str(i), True) for i in failed]
    assert await setaside.retry_all_spool(hub.db) == []


async def test_concurrent_retries_change_the_item_once(hub: Hub, settings: Settings) -> None:
    spool_id = await add_spool(hub.db, "pothole")
    # Separate engines, as separate `hub spool retry` processes would have.
    others = [Database(settings.database.url) for _ in range(4)]
    try:
        outcomes = await asyncio.gather(*(setaside.retry_spool(db, spool_id) for db in others),
                                        return_exceptions=True)
        retried_all = await asyncio.gather(*(setaside.retry_all_spool(db) for db in others))
    finally:
        for db in others:
            await db.dispose()
    assert sum(isinstance(o, setaside.Retried) for o in outcomes) == 1
    assert sum(isinstance(o, NotRetryable) for o in outcomes) == 3
    assert retried_all == [[], [], [], []]
    assert [a.target_id for a in await audit_rows(hub.db)] == [str(spool_id)]


async def test_concurrent_retry_all_changes_each_item_once(hub: Hub, settings: Settings) -> None:
    failed = [await add_spool(hub.db, f"failed {n}") for n in range(20)]
    others = [Database(settings.database.url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(setaside.retry_all_spool(db) for db in others))
    finally:
        for db in others:
            await db.dispose()
    assert sorted(r.id for result in results for r in result) == failed
    assert sorted(int(a.target_id or 0) for a in await audit_rows(hub.db)) == failed


# -- outbox -----------------------------------------------------------------------------------

async def test_outbox_list_shows_dead_items_with_message_and_error(
        hub: Hub, adapter: RecordingAdapter) -> None:
    message_id, outbox_id = await dead_outbox(hub, adapter)
    (item,) = await setaside.list_outbox(hub.db)
    assert (item.id, item.message_id, item.channel, item.state, item.attempts) == (
        outbox_id, message_id, "sms", "dead", 1)
    assert item.last_error and "provider busy" in item.last_error
    assert item.conversation_reference
    assert await setaside.list_outbox(hub.db, state="pending") == []
    assert len(await setaside.list_outbox(hub.db, state="all")) == 1
    with pytest.raises(SetAsideError, match="unknown state"):
        await setaside.list_outbox(hub.db, state="lost")


async def test_outbox_retry_is_delivered_exactly_once_by_the_sweeper(
        hub: Hub, adapter: RecordingAdapter) -> None:
    message_id, outbox_id = await dead_outbox(hub, adapter)
    assert (await row(hub.db, Message, message_id)).delivery_status == "failed"
    retried = await setaside.retry_outbox(hub.db, outbox_id)
    assert (retried.kind, retried.previous_attempts, retried.enqueued) == ("outbox", 1, False)
    assert retried.previous_error and "provider busy" in retried.previous_error
    item = await row(hub.db, OutboxItem, outbox_id)
    assert (item.state, item.attempts, item.locked_until, item.last_error) == (
        "pending", 0, None, None)
    assert item.next_attempt_at <= utcnow()
    assert (await row(hub.db, Message, message_id)).delivery_status == "queued"
    with pytest.raises(NotRetryable, match=f"outbox item {outbox_id} is pending, not dead"):
        await setaside.retry_outbox(hub.db, outbox_id)

    for _ in range(3):  # the running hub's maintenance loop, round after round
        await sweep_outbox(hub)
        await hub.jobs.drain()
    assert [m.body for m in adapter.sent] == ["We will fix it this week."]
    assert (await row(hub.db, OutboxItem, outbox_id)).state == "sent"
    assert (await row(hub.db, Message, message_id)).delivery_status == "sent"
    with pytest.raises(NotRetryable, match="is sent, not dead"):
        await setaside.retry_outbox(hub.db, outbox_id)
    with pytest.raises(NotFound, match="no outbox item 999"):
        await setaside.retry_outbox(hub.db, 999)
    (entry,) = await audit_rows(hub.db)
    assert (entry.actor, entry.action, entry.target_type, entry.target_id) == (
        "cli", "outbox.retry", "outbox", str(outbox_id))
    assert entry.detail["message_id"] == message_id and entry.detail["previous_attempts"] == 1
    assert "provider busy" in entry.detail["previous_error"]


async def test_outbox_retry_with_jobs_and_a_sweep_at_once_sends_once(
        hub: Hub, adapter: RecordingAdapter) -> None:
    _, outbox_id = await dead_outbox(hub, adapter)
    retried = await setaside.retry_outbox(hub.db, outbox_id, jobs=hub.jobs)
    assert retried.enqueued
    await sweep_outbox(hub)  # the job and the sweeper race for the item
    await hub.jobs.drain()
    await sweep_outbox(hub)
    await hub.jobs.drain()
    assert len(adapter.sent) == 1
    assert (await row(hub.db, OutboxItem, outbox_id)).state == "sent"


async def test_concurrent_outbox_retries_change_the_item_once(
        hub: Hub, adapter: RecordingAdapter, settings: Settings) -> None:
    _, outbox_id = await dead_outbox(hub, adapter)
    others = [Database(settings.database.url) for _ in range(4)]
    try:
        outcomes = await asyncio.gather(*(setaside.retry_outbox(db, outbox_id) for db in others),
                                        return_exceptions=True)
    finally:
        for db in others:
            await db.dispose()
    assert sum(isinstance(o, setaside.Retried) for o in outcomes) == 1
    assert sum(isinstance(o, NotRetryable) for o in outcomes) == 3
    assert [a.action for a in await audit_rows(hub.db)] == ["outbox.retry"]


def test_outbox_retry_with_redis_is_sent_by_a_worker_once(
        settings_data: dict[str, dict[str, Any]], redis_url: str,
        adapter: RecordingAdapter) -> None:
    settings_data["redis"] = {"url": redis_url, "queue_prefix": "hubtest"}
    settings = Settings.model_validate(settings_data)
    api = Hub(settings, adapters=[adapter])
    try:
        api.run_sync(api.prepare())
        _, outbox_id = api.run_sync(dead_outbox(api, adapter))
        jobs = RQJobs(redis_url, "hubtest")
        assert api.run_sync(setaside.retry_outbox(api.db, outbox_id, jobs=jobs)).enqueued
        jobs.close()
        assert api.run_sync(sweep_outbox(api)) == 1  # a hub's sweeper enqueues it as well
        _work(settings, adapter)
        assert len(adapter.sent) == 1
        assert api.run_sync(row(api.db, OutboxItem, outbox_id)).state == "sent"
    finally:
        api.run_sync(api.stop())


def _work(settings: Settings, adapter: RecordingAdapter) -> None:
    """A real RQ SimpleWorker until the queue is empty, with its own hub (like `hub worker`)."""
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


async def test_times_are_utc_and_json_ready(hub: Hub) -> None:
    when = utcnow() - timedelta(minutes=5)
    spool_id = await add_spool(hub.db, "json", received_at=when)
    (data,) = setaside.to_jsonable(await setaside.list_spool(hub.db))
    assert data["id"] == spool_id and data["received_at"] == when.isoformat()
    assert json.loads(json.dumps(setaside.to_jsonable(await setaside.show_spool(hub.db, spool_id))))
