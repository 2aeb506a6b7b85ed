"""The inbound spool on both databases: commit before acknowledgment, resend recognition,
batching, working into the intake in arrival order, failures set aside without blocking,
recovery after a stop, the backlog limit, and when the worker gives way to new arrivals."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import undefer

from hub.adapters.base import FetchLater
from hub.app import Hub
from hub.model import InboundMessage, LanguageGuess, SpoolItem, ThreadHints, utcnow
from hub.parsepool import ParsePool
from hub.routing import language
from hub.spool import (
    FETCH_ATTEMPTS,
    MAX_ATTEMPTS,
    MAX_RETRY_SECONDS,
    Spool,
    SpoolFull,
    SpoolWorker,
    WorkPolicy,
    _chunks,
    spool_key,
)
from hub.storage.tables import Conversation, Message, SpoolEntry
from tests.support.adapter import inbound

CHANNEL = "sms"


def item(sender: str, text: str, key: str | None = None) -> SpoolItem:
    payload = json.dumps({"from": sender, "text": text}).encode()
    return SpoolItem(channel=CHANNEL, dedupe_key=key or f"{sender}|{text}", payload=payload,
                     envelope={"via": "test"})


def parse(payload: bytes, envelope: Mapping[str, Any], received_at: datetime) -> InboundMessage:
    data = json.loads(payload)
    if data["text"] == "crash the parser":
        raise RuntimeError("a bug in the parser")
    assert envelope == {"via": "test"}
    return inbound(data["from"], data["text"], provider_id=f"{data['from']}|{data['text']}",
                   received_at=received_at, thread=ThreadHints(continue_latest=True))


def worker(hub: Hub, spool: Spool, **kwargs: Any) -> SpoolWorker:
    return SpoolWorker(spool, hub.intake, {CHANNEL: parse}, **kwargs)


async def entries(hub: Hub) -> list[SpoolEntry]:
    async with hub.db.read() as session:
        return list(await session.scalars(
            select(SpoolEntry).options(undefer(SpoolEntry.payload)).order_by(SpoolEntry.id)))


async def inbound_texts(hub: Hub) -> list[str]:
    async with hub.db.read() as session:
        return list(await session.scalars(select(Message.body).order_by(Message.id)))


async def test_put_commits_before_it_returns_and_a_resend_is_recognised(hub: Hub) -> None:
    spool = Spool(hub.db)
    first = await spool.put(item("+15550000001", "pothole"))
    assert not first.duplicate and first.spool_id > 0
    (entry,) = await entries(hub)  # read through another connection: it is committed
    assert (entry.id, entry.state, entry.attempts) == (first.spool_id, "pending", 0)
    assert json.loads(entry.payload or b"") == {"from": "+15550000001", "text": "pothole"}
    assert entry.envelope == {"via": "test"} and entry.received_at.tzinfo is not None

    again = await spool.put(item("+15550000001", "pothole"))
    assert again.duplicate and again.spool_id == first.spool_id
    assert len(await entries(hub)) == 1 and spool.backlog == 1


async def test_concurrent_puts_share_commits_and_copies_in_one_batch_store_once(hub: Hub) -> None:
    spool = Spool(hub.db)
    items = [item(f"+1555000{i:04d}", "light out") for i in range(40)]
    items += [item("+15550000007", "light out")] * 3  # copies of one item, in the same burst
    receipts = await asyncio.gather(*(spool.put(i) for i in items))
    assert sum(not r.duplicate for r in receipts) == 40
    assert len({r.spool_id for r in receipts}) == 40
    assert receipts[-1].spool_id == receipts[7].spool_id
    assert len(await entries(hub)) == 40 and spool.backlog == 40


async def test_a_long_key_is_hashed_to_fit(hub: Hub) -> None:
    key = "x" * 5000
    assert "sha256:" in spool_key(key) and len(spool_key(key)) <= 1024
    assert spool_key("short") == "short"
    spool = Spool(hub.db)
    receipt = await spool.put(item("+15550000001", "long", key=key))
    assert (await spool.put(item("+15550000001", "long", key=key))).duplicate
    assert (await entries(hub))[0].id == receipt.spool_id


async def test_the_worker_threads_in_arrival_order_and_marks_items_done(hub: Hub) -> None:
    spool = Spool(hub.db)
    for text in ("first", "second", "third"):
        await spool.put(item("+15550000001", text))
    await spool.put(item("+15550000002", "other"))
    assert await inbound_texts(hub) == []  # nothing is worked before the worker runs

    assert await worker(hub, spool).drain() == 4
    assert await inbound_texts(hub) == ["first", "second", "third", "other"]
    async with hub.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 2
    done = await entries(hub)
    assert {(e.state, e.payload) for e in done} == {("done", None)}
    assert all(e.message_id and e.processed_at for e in done)
    assert spool.backlog == 0


async def test_the_worker_hands_over_each_message_with_its_language_guessed(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(hub.db)
    await spool.put(item("+15550000001", "La farola de mi calle no funciona desde el lunes."))
    await spool.put(item("+15550000002", "The street light on my corner is out since Monday."))
    handed: list[InboundMessage] = []
    accept_many = hub.intake.accept_many

    async def spy(msgs: list[InboundMessage]) -> list[Any]:
        handed.extend(msgs)
        return await accept_many(msgs)

    monkeypatch.setattr(hub.intake, "accept_many", spy)
    codes = frozenset({"en", "es"})
    assert await worker(hub, spool, language_codes=lambda: codes).drain() == 2
    assert [m.language_guess for m in handed] == [LanguageGuess(codes, "es"),
                                                  LanguageGuess(codes, "en")]


class HeldPool(ParsePool):
    """A parse pool that records what it is asked to run and holds it until let go."""

    def __init__(self) -> None:
        super().__init__(processes=1)
        self.asked: list[tuple[Any, tuple[Any, ...]]] = []
        self.go = asyncio.Event()

    async def run_each(self, calls: Any) -> list[Any]:
        self.asked.extend(calls)
        await self.go.wait()
        return [None for _ in calls]


@pytest.mark.parametrize("codes", [frozenset({"en", "es"}), frozenset()])
async def test_starting_readies_the_parse_process_without_waiting_for_it(
        hub: Hub, codes: frozenset[str]) -> None:
    pool = HeldPool()
    work = worker(hub, Spool(hub.db), pool=pool, language_codes=lambda: codes)
    await asyncio.wait_for(work.start(), 5)  # returns while the warm-up is still held
    await asyncio.sleep(0)
    assert pool.asked[0][0] is parse  # the parsers' imports, on an empty payload
    # lingua's models only for rules that ask for a language
    assert [args for fn, args in pool.asked if fn is language.warm] == ([(codes,)] if codes
                                                                        else [])
    await asyncio.wait_for(work.stop(), 5)  # a warm-up still held does not hold the stop


async def test_idle_answers_at_once_with_no_backlog_and_waits_while_one_is_worked_but_not_long(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a send waits for before it is claimed (hub.workers.delivery).
    spool = Spool(hub.db)
    await spool.put(item("+15550000001", "the bin was not emptied"))
    entered, stored = asyncio.Event(), asyncio.Event()
    accept_many = hub.intake.accept_many

    async def held(msgs: list[InboundMessage]) -> list[Any]:
        entered.set()
        await stored.wait()
        return await accept_many(msgs)

    monkeypatch.setattr(hub.intake, "accept_many", held)
    work = worker(hub, spool)
    await asyncio.wait_for(work.idle(within=30), 1)  # nothing to work: at once
    await work.start()
    try:
        await asyncio.wait_for(entered.wait(), 5)
        waiting = asyncio.create_task(work.idle(within=30))
        await asyncio.wait_for(work.idle(within=0.05), 5)  # bounded: returns while it works
        assert not waiting.done()
        stored.set()
        await asyncio.wait_for(waiting, 5)
        assert await inbound_texts(hub) == ["the bin was not emptied"]
    finally:
        await work.stop()


async def test_working_an_item_twice_stores_it_once(hub: Hub) -> None:
    spool = Spool(hub.db)
    receipt = await spool.put(item("+15550000001", "pothole"))
    accepted = await hub.intake.accept(parse(item("+15550000001", "pothole").payload,
                                             {"via": "test"}, datetime.now().astimezone()))
    # As after a crash between the intake's commit and the spool's: worked again.
    await worker(hub, spool).drain()
    assert await inbound_texts(hub) == ["pothole"]
    (entry,) = await entries(hub)
    assert (entry.id, entry.state, entry.message_id) == (receipt.spool_id, "done",
                                                         accepted.message_id)


async def test_a_failing_item_is_set_aside_and_never_blocks_the_ones_behind_it(hub: Hub) -> None:
    spool = Spool(hub.db)
    await spool.put(item("+15550000001", "crash the parser"))
    await spool.put(item("+15550000002", "behind it"))
    work = worker(hub, spool)
    assert await work.drain() == 2
    assert await inbound_texts(hub) == ["behind it"]
    bad, good = await entries(hub)
    assert (bad.state, bad.attempts, good.state) == ("pending", 1, "done")
    assert bad.next_attempt_at is not None and "a bug in the parser" in (bad.last_error or "")

    for _ in range(2, MAX_ATTEMPTS + 1):  # due again each time (as the backoff ends)
        async with hub.db.transaction() as session:
            (await session.get_one(SpoolEntry, bad.id)).next_attempt_at = None
        await work.drain()
    (bad, _) = await entries(hub)
    assert (bad.state, bad.attempts) == ("failed", MAX_ATTEMPTS)
    assert bad.payload is not None  # kept, for someone to look at
    assert spool.backlog == 0


async def test_a_part_to_fetch_later_is_tried_for_hours_not_seconds(hub: Hub) -> None:
    spool = Spool(hub.db)
    await spool.put(item("+15550000001", "picture"))

    def media_down(payload: bytes, envelope: Mapping[str, Any],
                   received_at: datetime) -> InboundMessage:
        raise FetchLater("the provider's media server answered 503")

    work = SpoolWorker(spool, hub.intake, {CHANNEL: media_down})
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        before = utcnow()
        await work.drain()
        (entry,) = await entries(hub)
        assert entry.attempts == attempt
        if attempt < FETCH_ATTEMPTS:  # past a parse failure's MAX_ATTEMPTS, still pending
            assert entry.state == "pending" and entry.next_attempt_at is not None
            wait = (entry.next_attempt_at - before).total_seconds()
            assert wait <= MAX_RETRY_SECONDS + 5
            async with hub.db.transaction() as session:
                (await session.get_one(SpoolEntry, entry.id)).next_attempt_at = None
    assert FETCH_ATTEMPTS > MAX_ATTEMPTS and wait > 3000  # the last waits were an hour
    assert entry.state == "failed" and "503" in (entry.last_error or "")
    assert spool.backlog == 0


async def test_when_the_intake_is_unavailable_items_stay_pending_without_an_attempt(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.intake import IntakeUnavailable

    spool = Spool(hub.db)
    await spool.put(item("+15550000001", "pothole"))

    async def unavailable(msgs: list[InboundMessage]) -> list[Exception]:
        return [IntakeUnavailable("database is away") for _ in msgs]

    monkeypatch.setattr(hub.intake, "accept_many", unavailable)
    work = worker(hub, spool)
    assert await work.work_batch() == -1
    (entry,) = await entries(hub)
    assert (entry.state, entry.attempts) == ("pending", 0)
    monkeypatch.undo()
    assert await work.drain() == 1 and await inbound_texts(hub) == ["pothole"]


async def test_items_left_pending_are_worked_when_a_worker_starts(hub: Hub) -> None:
    await Spool(hub.db).put(item("+15550000001", "left behind by a crash"))
    spool = Spool(hub.db)  # a new process: knows nothing yet
    work = worker(hub, spool, policy=WorkPolicy(quiet=0, max_delay=0))
    await work.start()
    try:
        assert spool.backlog == 1
        for _ in range(400):
            if await inbound_texts(hub):
                break
            await asyncio.sleep(0.025)
        assert await inbound_texts(hub) == ["left behind by a crash"]
    finally:
        await work.stop()


async def test_a_full_spool_refuses_and_takes_items_again_once_worked(hub: Hub) -> None:
    spool = Spool(hub.db, max_backlog=2)
    await spool.put(item("+15550000001", "one"))
    await spool.put(item("+15550000002", "two"))
    with pytest.raises(SpoolFull):
        await spool.put(item("+15550000003", "three"))
    await worker(hub, spool).drain()
    assert not (await spool.put(item("+15550000003", "three"))).duplicate


async def test_a_batch_with_an_unstorable_item_stores_the_others(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(hub.db)
    insert = spool._insert

    async def refuse_poison(items: list[SpoolItem]) -> Any:
        if any(i.dedupe_key == "poison" for i in items):
            raise ValueError("cannot store this one")
        return await insert(items)

    monkeypatch.setattr(spool, "_insert", refuse_poison)
    outcomes = await asyncio.gather(
        spool.put(item("+15550000001", "fine")), spool.put(item("+15550000002", "x", "poison")),
        spool.put(item("+15550000003", "also fine")), return_exceptions=True)
    assert isinstance(outcomes[1], ValueError)
    assert [e.dedupe_key for e in await entries(hub)] == ["+15550000001|fine",
                                                          "+15550000003|also fine"]


@pytest.mark.parametrize(("now", "last_put", "since", "wait"), [
    (10.0, 9.0, 9.0, 0.0),      # quiet for a second: work now
    (10.0, 9.99, 9.5, 0.04),    # a mail 10 ms ago: give way until 50 ms of quiet
    (10.0, 9.99, 7.99, 0.0),    # but items have waited 2 s: work now, burst or not
    (10.0, 9.999, 8.0, 0.0),
    (10.0, 9.97, 8.5, 0.02),
])
def test_the_worker_gives_way_to_new_arrivals_for_a_bounded_time(
        now: float, last_put: float, since: float, wait: float) -> None:
    policy = WorkPolicy(quiet=0.05, max_delay=2.0)
    assert policy.wait_before_work(now, last_put, since) == pytest.approx(wait, abs=1e-9)


def test_a_batch_is_parsed_in_chunks_that_grow_from_a_small_first_one() -> None:
    # Nothing is stored while the first chunk is parsed; each later one is parsed while the
    # one before it is stored.
    assert [len(c) for c in _chunks(list(range(128)))] == [8, 16, 32, 32, 32, 8]
    assert [len(c) for c in _chunks(list(range(5)))] == [5] and _chunks([]) == []


async def test_chunks_parsed_while_the_first_is_stored_go_into_one_transaction(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # A small transaction costs nearly what a large one does: what is parsed while the
    # intake stores the first chunk must not wait for it, but join the next transaction.
    spool = Spool(hub.db)
    texts = [f"streetlight {i} is out" for i in range(128)]
    await asyncio.gather(*(spool.put(item(f"+1555300{i:04d}", text))
                           for i, text in enumerate(texts)))
    handed: list[InboundMessage] = []
    accept_many = hub.intake.accept_many

    async def counted(msgs: list[InboundMessage]) -> list[Any]:
        handed.extend(msgs)
        return await accept_many(msgs)

    sizes: list[int] = []
    store_batch = hub.intake._store_batch

    async def held_first(items: list[Any]) -> list[Any]:
        sizes.append(len(items))
        for _ in range(500):  # the first transaction lasts until the whole batch is parsed
            if len(sizes) > 1 or len(handed) == len(texts):
                break
            await asyncio.sleep(0.01)
        return await store_batch(items)

    monkeypatch.setattr(hub.intake, "accept_many", counted)
    monkeypatch.setattr(hub.intake, "_store_batch", held_first)
    assert await worker(hub, spool, policy=WorkPolicy(quiet=0)).drain() == len(texts)
    assert sizes == [8, 120]  # not one per parsed chunk (8, 16, 32, 32, 32, 8)
    assert await inbound_texts(hub) == texts  # in the order they came
    assert {e.state for e in await entries(hub)} == {"done"}


async def test_a_message_accepted_during_a_long_batch_waits_behind_two_transactions_or_so(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # The spool worker hands parsed chunks over only while less than a transaction's worth
    # waits: a chat line accepted meanwhile in the same process is not queued behind them all.
    spool = Spool(hub.db)
    await asyncio.gather(*(spool.put(item(f"+1555400{i:04d}", f"bin {i} not emptied"))
                           for i in range(600)))
    transactions: list[list[str]] = []
    store_batch = hub.intake._store_batch

    async def slow(items: list[Any]) -> list[Any]:
        transactions.append([msg.text for msg, _ in items])
        await asyncio.sleep(0.1)  # storing is slower than parsing, as it is in the hub
        return await store_batch(items)

    monkeypatch.setattr(hub.intake, "_store_batch", slow)
    work = worker(hub, spool, policy=WorkPolicy(quiet=0))
    draining = asyncio.create_task(work.drain())
    for _ in range(1000):
        if len(transactions) >= 2:
            break
        await asyncio.sleep(0.005)
    await hub.intake.accept(inbound("+15550009999", "chat line"))
    assert await draining == 600
    (at,) = [i for i, texts in enumerate(transactions) if "chat line" in texts]
    before = sum(len(texts) for texts in transactions[:at])
    # At most the transactions under way and waiting (one chunk over), not the whole batch.
    assert before <= 8 + 128 + 128 + 32, (at, [len(t) for t in transactions])


async def test_a_failure_after_a_commit_stops_neither_the_intake_nor_the_worker(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(hub.db)
    await asyncio.gather(*(spool.put(item(f"+1555700{i:04d}", f"graffiti {i}"))
                           for i in range(400)))
    after_commit = hub.intake._after_commit
    calls: list[int] = []

    def fails_once(stored: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("a listener failed")
        after_commit(stored)

    store_batch = hub.intake._store_batch

    async def slow(items: list[Any]) -> list[Any]:
        await asyncio.sleep(0.01)  # parsing gets ahead: the worker waits for room
        return await store_batch(items)

    monkeypatch.setattr(hub.intake, "_after_commit", fails_once)
    monkeypatch.setattr(hub.intake, "_store_batch", slow)
    work = worker(hub, spool, policy=WorkPolicy(quiet=0))
    assert await asyncio.wait_for(work.drain(), 20) == 400
    assert len(await inbound_texts(hub)) == 400


async def test_a_batch_larger_than_a_statements_bind_limit_is_read_in_slices(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hub.spool.PAYLOADS_AT_ONCE", 3)
    spool = Spool(hub.db)
    texts = [f"pothole {i}" for i in range(10)]
    for i, text in enumerate(texts):
        await spool.put(item(f"+1555500{i:04d}", text))
    reads: list[int] = []

    def count(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
              executemany: bool) -> None:
        if statement.startswith("SELECT inbound_spool.id, inbound_spool.payload"):
            reads.append(len(params))

    engines = {hub.db.read_engine.sync_engine, hub.db.write_engine.sync_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        assert await worker(hub, spool, policy=WorkPolicy(quiet=0)).drain() == 10
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    assert reads == [3, 3, 3, 1]
    assert await inbound_texts(hub) == texts


async def test_stopping_lets_what_was_handed_over_be_stored_then_nothing_more(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(hub.db)
    await asyncio.gather(*(spool.put(item(f"+1555600{i:04d}", f"noise {i}"))
                           for i in range(300)))
    started = asyncio.Event()
    store_batch = hub.intake._store_batch

    async def slow(items: list[Any]) -> list[Any]:
        started.set()
        await asyncio.sleep(0.02)
        return await store_batch(items)

    monkeypatch.setattr(hub.intake, "_store_batch", slow)
    work = worker(hub, spool, policy=WorkPolicy(quiet=0, max_delay=0))
    await work.start()
    await asyncio.wait_for(started.wait(), 5)
    await work.stop()
    await hub.intake.close()
    stored = len(await inbound_texts(hub))
    assert stored < 300  # stopped mid-batch
    await asyncio.sleep(0.2)
    assert len(await inbound_texts(hub)) == stored  # nothing is stored after close()
    # What was not recorded as worked is worked again, and stored once.
    assert await worker(hub, spool).drain() > 0
    assert sorted(await inbound_texts(hub)) == sorted(f"noise {i}" for i in range(300))


def test_past_the_delay_the_worker_keeps_to_its_share_while_mail_keeps_arriving() -> None:
    policy = WorkPolicy(quiet=0.05, max_delay=2.0, share=0.5)
    assert policy.pause_after(0.2, now=10.0, last_put=9.99) == pytest.approx(0.2)
    assert WorkPolicy(share=0.25).pause_after(0.1, now=10.0, last_put=9.99) == pytest.approx(0.3)
    assert policy.pause_after(0.2, now=10.0, last_put=9.0) == 0.0  # nothing arriving: no pause


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_workers_on_postgresql_work_each_item_once(hub: Hub, db_url: str) -> None:
    """As two `hub serve` processes do: each claims its batch with FOR UPDATE SKIP LOCKED, so
    no item is parsed and stored by both (the dedupe would hide it; the counts do not)."""
    spool = Spool(hub.db)
    await asyncio.gather(*(spool.put(item(f"+1555100{i:04d}", "bin not emptied"))
                           for i in range(120)))
    parsed: list[str] = []

    def counting(payload: bytes, envelope: Mapping[str, Any],
                 received_at: datetime) -> InboundMessage:
        parsed.append(json.loads(payload)["from"])
        return parse(payload, envelope, received_at)

    workers = [SpoolWorker(spool, hub.intake, {CHANNEL: counting}, batch=16) for _ in range(2)]
    worked = await asyncio.gather(*(w.drain() for w in workers))
    assert sum(worked) == 120 and all(worked)  # both took a share, none worked twice
    assert sorted(parsed) == sorted(set(parsed)) and len(parsed) == 120
    assert {e.state for e in await entries(hub)} == {"done"}
    assert len(await inbound_texts(hub)) == 120
