"""`q=` on both databases, through both of its ways (the index for a rare text, the newest-first
walk for a common one): a substring of a subject, a message body or an address, whatever its
case; what is written, changed or deleted later is found (or no longer found) at once; a
citizen's text that looks like query syntax (`"`, `*`, `AND`, `NEAR(`, `%`, `_`, `\\`) is only
text; one- and two-character texts work too."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, event, text, update

from hub import search, service
from hub.app import Hub
from hub.model import utcnow
from hub.service import ConversationFilter
from hub.staff import add_staff
from hub.storage.tables import Contact, Conversation, Identity, Message, Staff

HOSTILE = 'She said "fix it" AND 50% of 100_000 \\ done * NEAR(now) ^col:x'
THREADS = {  # name -> (subject, body, (channel, address))
    "light": ("Broken STREETLIGHT on Elm", "It flickers at night", ("sms", "+15550001111")),
    "hostile": (None, HOSTILE, ("email", "jane.doe@mail.example")),
    "noise": ("Noise", "Loud music", ("sms", "+15550002222")),
}


@pytest.fixture(params=["index", "walk"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """`walk`: every text counts as common (the probe's cap is 1), so the walk answers."""
    if request.param == "walk":
        monkeypatch.setattr(search, "PROBE_CAP", 1)
    return str(request.param)


async def seed(hub: Hub) -> tuple[Staff, dict[str, int]]:
    """A supervisor and one conversation per THREADS entry: (supervisor, name -> id)."""
    ids: dict[str, int] = {}
    async with hub.db.transaction() as session:
        boss = await add_staff(session, "boss@city.example", name="Boss", role="supervisor")
        for n, (name, (subject, body, (channel, address))) in enumerate(THREADS.items()):
            contact = Contact(name=name)
            session.add(contact)
            await session.flush()
            session.add(Identity(contact_id=contact.id, channel=channel, address=address))
            at = utcnow() - timedelta(minutes=n)
            conversation = Conversation(reference=f"REF{n}", contact_id=contact.id,
                                        channel=channel, queue="general", subject=subject,
                                        last_message_at=at)
            session.add(conversation)
            await session.flush()
            session.add(Message(conversation_id=conversation.id, direction="inbound",
                                channel=channel, body=body, created_at=at))
            ids[name] = conversation.id
        session.expunge(boss)
    return boss, ids


async def found(hub: Hub, staff: Staff, text: str) -> set[int]:
    async with hub.db.read() as session:
        rows = await service.list_conversations(session, staff, ConversationFilter(text=text),
                                                50)
    return {row.id for row in rows}


async def test_finds_substrings_of_subjects_bodies_and_addresses_in_any_case(
        hub: Hub, way: str) -> None:
    boss, ids = await seed(hub)
    light, hostile, noise = ids["light"], ids["hostile"], ids["noise"]
    assert await found(hub, boss, "streetlight") == {light}  # subject
    assert await found(hub, boss, "FLICKERS AT") == {light}  # body, across a space
    assert await found(hub, boss, "0001111") == {light}  # phone number
    assert await found(hub, boss, "Doe@Mail.EX") == {hostile}  # email address
    assert await found(hub, boss, "music") == {noise}
    assert await found(hub, boss, "zebra crossing") == set()
    assert await found(hub, boss, "lo") == {noise}  # too short for a trigram
    assert await found(hub, boss, "e") == {light, hostile, noise}


@pytest.mark.parametrize("text", ['"', '"fix it"', "*", "done *", "AND", "and 50%", "NEAR(",
                                  "NEAR(now)", "%", "50%", "_", "100_000", "\\", "\\ done",
                                  "^col:x", HOSTILE.upper()])
async def test_query_syntax_in_the_text_is_only_text(hub: Hub, way: str, text: str) -> None:
    boss, ids = await seed(hub)
    assert await found(hub, boss, text) == {ids["hostile"]}


async def test_what_is_written_changed_or_deleted_later_is_found_at_once(
        hub: Hub, way: str) -> None:
    boss, ids = await seed(hub)
    light, noise = ids["light"], ids["noise"]
    async with hub.db.transaction() as session:
        session.add(Message(conversation_id=noise, direction="inbound", channel="sms",
                            body="Also a QUILLFEATHER in the pond", created_at=utcnow()))
    assert await found(hub, boss, "quillfeather") == {noise}

    async with hub.db.transaction() as session:
        await session.execute(update(Conversation).where(Conversation.id == light)
                              .values(subject="Pothole on Elm"))
        await session.execute(update(Message).where(Message.conversation_id == noise)
                              .values(delivery_status="read"))  # not the body: index untouched
        await session.execute(update(Identity).where(Identity.address == "+15550002222")
                              .values(address="+15550003333"))
    assert await found(hub, boss, "streetlight") == set()
    assert await found(hub, boss, "pothole") == {light}
    assert await found(hub, boss, "0002222") == set()
    assert await found(hub, boss, "0003333") == {noise}

    async with hub.db.transaction() as session:
        await session.execute(delete(Message).where(Message.body.like("%QUILLFEATHER%")))
        await session.execute(delete(Conversation).where(Conversation.id == ids["hostile"]))
    assert await found(hub, boss, "quillfeather") == set()
    assert await found(hub, boss, "fix it") == set()
    if hub.db.is_sqlite:  # the indexes still agree with their tables, row for row
        async with hub.db.transaction() as session:
            for table in ("conversations_fts", "messages_fts", "identities_fts"):
                await session.execute(text(
                    f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"))


def test_texts_become_patterns_and_phrases_that_hold_no_syntax() -> None:
    assert search.like_pattern("50%_\\") == "%50\\%\\_\\\\%"
    assert search.fts_phrase('say "hi" NEAR(x) *') == '"say ""hi"" NEAR(x) *"'


async def test_a_text_found_common_is_walked_without_asking_the_index_again(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    boss, ids = await seed(hub)
    monkeypatch.setattr(search, "PROBE_CAP", 2)  # "on elm" is in two conversations: common
    async with hub.db.transaction() as session:
        session.add(Message(conversation_id=ids["noise"], direction="inbound", channel="sms",
                            body="The party on Elm goes on", created_at=utcnow()))
    probes: list[str] = []

    def count_probes(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "array_agg" in statement or "count(*) FROM (SELECT rowid" in statement:
            probes.append(statement)

    event.listen(hub.db.read_engine.sync_engine, "before_cursor_execute", count_probes)
    try:
        both = {ids["light"], ids["noise"]}
        assert await found(hub, boss, "on elm") == both
        assert len(probes) == 1
        assert await found(hub, boss, "ON ELM") == both  # the same text: walked at once
        assert len(probes) == 1
        assert await found(hub, boss, "music") == {ids["noise"]}  # rare: asked every time
        assert await found(hub, boss, "music") == {ids["noise"]}
        assert len(probes) == 3
        monkeypatch.setattr(search, "COMMON_SECONDS", 0.0)  # a verdict that lapses at once
        probes.clear()
        assert await found(hub, boss, "elm") == both
        assert await found(hub, boss, "elm") == both
        assert len(probes) == 2
    finally:
        event.remove(hub.db.read_engine.sync_engine, "before_cursor_execute", count_probes)
