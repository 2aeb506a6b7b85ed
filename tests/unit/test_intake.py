"""The intake on both databases: dedupe under concurrency, threading, reopening, attachments."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from hub.app import Hub
from hub.intake import IntakeUnavailable
from hub.model import InboundAttachment, ThreadHints, utcnow
from hub.storage.tables import (
    Attachment,
    Contact,
    Conversation,
    Identity,
    Message,
    RoutingDecisionRow,
)
from hub.tokens import make_reply_token
from tests.support.adapter import inbound, with_


async def count(hub: Hub, model: type) -> int:
    async with hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_twenty_identical_accepts_at_once_store_one_message(hub: Hub) -> None:
    msg = inbound(provider_id="SM-same-id")
    results = await asyncio.gather(*(hub.intake.accept(msg) for _ in range(20)))
    assert await count(hub, Message) == 1
    assert await count(hub, Conversation) == 1
    assert await count(hub, Contact) == 1
    assert len({r.message_id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1


async def test_concurrent_first_messages_from_one_sender_make_one_contact(hub: Hub) -> None:
    msgs = [inbound(sender="+15550009999", provider_id=f"SM-{i}") for i in range(10)]
    await asyncio.gather(*(hub.intake.accept(m) for m in msgs))
    assert await count(hub, Message) == 10
    assert await count(hub, Identity) == 1
    assert await count(hub, Contact) == 1


async def test_new_message_is_routed_to_the_default_queue_with_a_trace(hub: Hub) -> None:
    accepted = await hub.intake.accept(inbound())
    async with hub.db.read() as session:
        conversation = await session.get_one(Conversation, accepted.conversation_id)
        decision = await session.scalar(select(RoutingDecisionRow))
    assert conversation.queue == "general"
    assert conversation.status == "open"
    assert len(conversation.reference) == 10
    assert decision is not None and decision.rules_version == "default"
    assert decision.trace


async def test_chat_messages_continue_the_latest_live_conversation(hub: Hub) -> None:
    first = await hub.intake.accept(inbound(sender="+15550001111"))
    second = await hub.intake.accept(inbound(sender="+15550001111", text="any news?"))
    other = await hub.intake.accept(inbound(sender="+15550002222"))
    assert second.conversation_id == first.conversation_id
    assert not second.new_conversation
    assert other.conversation_id != first.conversation_id


async def test_resolved_conversation_reopens_within_window_only(hub: Hub) -> None:
    first = await hub.intake.accept(inbound(sender="+15550003333"))
    async with hub.db.transaction() as session:
        conv = await session.get_one(Conversation, first.conversation_id)
        conv.status, conv.resolved_at = "resolved", utcnow() - timedelta(days=1)
    again = await hub.intake.accept(inbound(sender="+15550003333"))
    assert again.conversation_id == first.conversation_id
    async with hub.db.transaction() as session:
        conv = await session.get_one(Conversation, first.conversation_id)
        assert conv.status == "open"
        conv.status, conv.resolved_at = "resolved", utcnow() - timedelta(days=30)
    late = await hub.intake.accept(inbound(sender="+15550003333"))
    assert late.conversation_id != first.conversation_id and late.new_conversation


async def test_reply_token_threads_and_a_forged_one_does_not(hub: Hub) -> None:
    first = await hub.intake.accept(inbound("ann@example.org", channel="email", subject="Bins"))
    token = make_reply_token(first.conversation_id, hub.reply_secret)
    reply = inbound("ann@example.org", channel="email", thread=ThreadHints(reply_token=token))
    assert (await hub.intake.accept(reply)).conversation_id == first.conversation_id
    forged = make_reply_token(first.conversation_id, b"another secret")
    stranger = inbound("eve@example.org", channel="email", thread=ThreadHints(reply_token=forged))
    assert (await hub.intake.accept(stranger)).conversation_id != first.conversation_id


async def test_reference_threads_only_for_the_conversations_own_contact(hub: Hub) -> None:
    first = await hub.intake.accept(inbound("bob@example.org", channel="email"))
    hint = ThreadHints(reference=first.reference)
    own = await hub.intake.accept(inbound("bob@example.org", channel="email", thread=hint))
    stranger = await hub.intake.accept(inbound("mallory@example.org", channel="email",
                                               thread=hint))
    assert own.conversation_id == first.conversation_id
    assert stranger.conversation_id != first.conversation_id


async def test_references_thread_to_a_stored_message(hub: Hub) -> None:
    first = await hub.intake.accept(inbound("cy@example.org", channel="email",
                                            thread_key="<abc@mail.example>"))
    reply = inbound("cy@example.org", channel="email",
                    thread=ThreadHints(refs=("<zzz@x>", "<abc@mail.example>")))
    accepted = await hub.intake.accept(reply)
    assert accepted.conversation_id == first.conversation_id
    async with hub.db.read() as session:
        row = await session.get_one(Message, accepted.message_id)
    assert row.thread_rule == "references"


async def test_attachments_are_stored_content_addressed(hub: Hub) -> None:
    data = b"%PDF-1.4 fake"
    msg = inbound(attachments=(InboundAttachment("photo.pdf", "application/pdf", data),
                               InboundAttachment("copy.pdf", "application/pdf", data)))
    accepted = await hub.intake.accept(msg)
    async with hub.db.read() as session:
        rows = list(await session.scalars(
            select(Attachment).where(Attachment.message_id == accepted.message_id)))
    assert [r.size for r in rows] == [len(data), len(data)]
    assert rows[0].sha256 == rows[1].sha256
    assert (await hub.blobs.get(rows[0].sha256)) == data


async def test_calls_made_together_are_stored_in_the_order_made(hub: Hub) -> None:
    # The spool worker hands each parsed chunk over without waiting for the one before; a
    # chunk whose attachment is still being written must not be overtaken by the next one.
    put = hub.blobs.put

    async def slow_put(data: bytes) -> str:
        await asyncio.sleep(0.05)
        return await put(data)

    hub.blobs.put = slow_put  # type: ignore[method-assign]
    photo = InboundAttachment("photo.jpg", "image/jpeg", b"\xff\xd8 fake")
    sender = "+15550004444"
    first = [inbound(sender, "the photo", attachments=(photo,)), inbound(sender, "second")]
    later = [inbound(sender, "third"), inbound(sender, "fourth")]
    calls = [asyncio.create_task(hub.intake.accept_many(first)),
             asyncio.create_task(hub.intake.accept_many(later))]
    outcomes = [o for call in await asyncio.gather(*calls) for o in call]
    async with hub.db.read() as session:
        texts = list(await session.scalars(select(Message.body).order_by(Message.id)
                                           .where(Message.direction == "inbound")))
    assert texts == ["the photo", "second", "third", "fourth"]
    assert [o.message_id for o in outcomes] == sorted(o.message_id for o in outcomes)
    assert len({o.conversation_id for o in outcomes}) == 1  # all continue the first


async def test_with_the_database_away_a_batch_is_not_retried_message_by_message(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[int] = []

    async def away(items: list[Any]) -> list[Any]:
        tries.append(len(items))
        raise OperationalError("BEGIN", {}, sqlite3.OperationalError("unable to open database"))

    async def no_answer() -> bool:
        return False

    monkeypatch.setattr(hub.intake, "_transaction", away)
    monkeypatch.setattr(hub.db, "ping", no_answer)
    outcomes = await hub.intake.accept_many([inbound(f"+155570{i:05d}") for i in range(50)])
    assert all(isinstance(o, IntakeUnavailable) for o in outcomes) and len(outcomes) == 50
    assert tries == [50, 1]  # the batch, one message alone, then the database is asked


async def test_room_counts_what_callers_before_are_still_queuing(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # A caller still writing an attachment's blob has not queued its messages yet; room()
    # must count them all the same, or the spool worker hands over more behind them.
    put = hub.blobs.put

    async def slow_put(data: bytes) -> str:
        await asyncio.sleep(0.05)
        return await put(data)

    started: list[int] = []
    store_batch = hub.intake._store_batch

    async def counted(items: list[Any]) -> list[Any]:
        started.append(len(items))
        return await store_batch(items)

    monkeypatch.setattr(hub.blobs, "put", slow_put)
    monkeypatch.setattr(hub.intake, "_store_batch", counted)
    photo = InboundAttachment("photo.jpg", "image/jpeg", b"\xff\xd8 fake")
    msgs = [inbound(f"+155580{i:05d}", attachments=(photo,) if i == 0 else ())
            for i in range(130)]
    queuing = asyncio.create_task(hub.intake.accept_many(msgs))
    await asyncio.sleep(0)  # it holds the queue while the photo is written
    await asyncio.wait_for(hub.intake.room(), 10)
    assert started  # room() waited for those 130 and for a transaction to take them
    assert len(await queuing) == 130


async def test_close_answers_what_it_could_not_store(hub: Hub,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    held = asyncio.Event()

    async def stuck(items: list[Any]) -> list[Any]:
        await held.wait()
        raise AssertionError("unreachable")

    monkeypatch.setattr(hub.intake, "_store_batch", stuck)
    first = asyncio.create_task(hub.intake.accept(inbound("+15558000001")))
    await asyncio.sleep(0.01)  # the first is in a transaction that never ends
    second = asyncio.create_task(hub.intake.accept(inbound("+15558000002")))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(hub.intake.close(within=0.1), 5)
    for task in (first, second):  # both answered, neither left waiting
        with pytest.raises(IntakeUnavailable):
            await asyncio.wait_for(task, 5)


async def test_html_is_sanitised_and_raw_is_kept(hub: Hub) -> None:
    msg = with_(inbound(), html='<p onclick="x()">Hi<script>alert(1)</script></p>',
                raw=b"raw bytes")
    accepted = await hub.intake.accept(msg)
    async with hub.db.read() as session:
        html, raw = (await session.execute(
            select(Message.html, Message.raw).where(Message.id == accepted.message_id))).one()
    assert html == "<p>Hi</p>"
    assert raw == b"raw bytes"


async def test_another_sender_joining_by_thread_key_or_token_is_flagged(hub: Hub) -> None:
    first = await hub.intake.accept(inbound(
        "ana@example.org", "pothole", channel="email", thread_key="a1@example.org"))
    by_refs = await hub.intake.accept(inbound(
        "neighbour@example.org", "I saw it too", channel="email",
        thread=ThreadHints(refs=("a1@example.org",))))
    token = make_reply_token(first.conversation_id, hub.reply_secret)
    by_token = await hub.intake.accept(inbound(
        "other@example.org", "forwarded", channel="email", thread=ThreadHints(reply_token=token)))
    own = await hub.intake.accept(inbound(
        "ana@example.org", "any news?", channel="email",
        thread=ThreadHints(refs=("a1@example.org",))))
    assert {a.conversation_id for a in (by_refs, by_token, own)} == {first.conversation_id}
    async with hub.db.read() as session:
        flags = {m.id: m.flags for m in await session.scalars(select(Message))}
    assert "another_sender" in flags[by_refs.message_id]
    assert "another_sender" in flags[by_token.message_id]
    assert "another_sender" not in flags[own.message_id] + flags[first.message_id]
