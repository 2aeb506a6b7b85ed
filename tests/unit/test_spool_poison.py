"""Poison never stalls the spool, on both databases: streams that mix good items with bad ones at
random (seeded) positions, worked by the real intake.

Bad kinds: a parser crash, a data error from the database (the item's fault: counted, then set
aside), an error that looks like "the database is away" while the database answers (counted
after a few strikes), and hostile-but-storable values (keys longer than their column that share
a prefix, NULs, lone surrogates, overlong subjects, names and languages), which must simply be
stored, cut and cleaned.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import undefer

from hub.app import Hub
from hub.model import InboundMessage, SpoolItem, ThreadHints
from hub.spool import MAX_ATTEMPTS, STRIKES, Spool, SpoolWorker
from hub.storage.tables import Conversation, Message, SpoolEntry
from tests.support.adapter import inbound

CHANNEL = "sms"
LONG_PREFIX = "<" + "a" * 620
GOOD, HOSTILE, CRASH, DATA, LOCKED = "good", "hostile", "crash", "data", "locked"
BAD = (CRASH, DATA, LOCKED)


def parse(payload: bytes, envelope: Mapping[str, Any], received_at: datetime) -> InboundMessage:
    data = json.loads(payload)
    kind, n = data["kind"], data["n"]
    if kind == CRASH:
        raise RuntimeError("a bug in the parser")
    sender = f"+1555000{n:04d}"
    if kind != HOSTILE:
        return inbound(sender, f"{kind} {n}", provider_id=f"P{n}", received_at=received_at,
                       thread=ThreadHints(continue_latest=True))
    return inbound(
        sender, f"hostile {n}: nul\x00 and a lone surrogate \udcff here",
        provider_id=f"{LONG_PREFIX}-{n}>", received_at=received_at,
        sender_name="N\x00" + "ame " * 100, subject="S" * 2000 + "\x00",
        language="x" * 30, thread_key=f"{LONG_PREFIX}-{n}>",
        thread=ThreadHints(continue_latest=True), meta={"header\x00": "v\x00\udcff"})


def stream(seed: int, size: int = 60) -> list[str]:
    rng = random.Random(seed)
    kinds = [GOOD] * 36 + [HOSTILE] * 12 + [CRASH] * 4 + [DATA] * 4 + [LOCKED] * 4
    rng.shuffle(kinds)
    return kinds[:size]


async def entries(hub: Hub) -> list[SpoolEntry]:
    async with hub.db.read() as session:
        return list(await session.scalars(
            select(SpoolEntry).options(undefer(SpoolEntry.payload)).order_by(SpoolEntry.id)))


def failing_store(hub: Hub) -> Any:
    real = hub.intake._store

    async def store(session: Any, msg: InboundMessage, blob_ids: list[str]) -> Any:
        if msg.text.startswith(DATA):
            raise DataError("INSERT ...", {}, Exception("value too long for type"))
        if msg.text.startswith(LOCKED):
            raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
        return await real(session, msg, blob_ids)

    return store


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_bad_items_at_random_positions_never_hold_up_the_others(
        hub: Hub, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.intake, "_store", failing_store(hub))
    kinds = stream(seed)
    spool = Spool(hub.db)
    for n, kind in enumerate(kinds):
        payload = json.dumps({"kind": kind, "n": n}).encode()
        await spool.put(SpoolItem(channel=CHANNEL, dedupe_key=f"k{n}", payload=payload))
    work = SpoolWorker(spool, hub.intake, {CHANNEL: parse})

    await work.drain()  # one pass, as the worker makes it right behind the acknowledgments
    first = {e.id: e for e in await entries(hub)}
    stored_at_once = [first[n + 1].state for n, kind in enumerate(kinds) if kind not in BAD]
    assert set(stored_at_once) == {"done"}, "a good item waited behind a bad one"

    for _ in range(MAX_ATTEMPTS * STRIKES + 2):  # every backoff ends at once
        async with hub.db.transaction() as session:
            await session.execute(update(SpoolEntry).values(next_attempt_at=None))
        await work.drain()
    final = await entries(hub)
    assert {e.state for e in final if kinds[e.id - 1] in BAD} == {"failed"}
    for entry in final:
        if kinds[entry.id - 1] in BAD:
            assert entry.attempts == MAX_ATTEMPTS and entry.payload is not None
            assert entry.last_error and "INSERT" not in entry.last_error  # no SQL, no data
    assert spool.backlog == 0

    async with hub.db.read() as session:
        stored = list(await session.scalars(select(Message).options(undefer(Message.full_text))))
        conversations = list(await session.scalars(select(Conversation)))
    assert len(stored) == sum(kind in (GOOD, HOSTILE) for kind in kinds)
    hostile = [m for m in stored if m.body.startswith("hostile")]
    assert len(hostile) == kinds.count(HOSTILE)
    assert len({m.provider_id for m in hostile}) == len(hostile)  # a shared prefix stays apart
    for message in hostile:
        assert "\x00" not in message.body and "\ufffd" in message.body
        assert message.provider_id is not None and len(message.provider_id) <= 512
        assert message.subject is not None and len(message.subject) == 998
        assert message.subject.endswith("\u2026") and message.language == "xxxxxxx\u2026"
        assert message.meta == {"header\ufffd": "v\ufffd\ufffd"}
    assert all(c.subject is None or len(c.subject) <= 998 for c in conversations)


async def test_a_resent_long_key_is_found_as_the_same_message(hub: Hub) -> None:
    first = inbound("+15550001111", "one", provider_id=f"{LONG_PREFIX}-same>")
    again = inbound("+15550001111", "one", provider_id=f"{LONG_PREFIX}-same>")
    other = inbound("+15550001111", "two", provider_id=f"{LONG_PREFIX}-other>")
    a, b, c = [await hub.intake.accept(m) for m in (first, again, other)]
    assert not a.duplicate and b.duplicate and b.message_id == a.message_id
    assert not c.duplicate and c.message_id != a.message_id
