"""`q=`: which conversations hold a text in their subject, in a message body or in one of their
contact's addresses, case-insensitively, as a substring. The query side of the trigram indexes
of migration 0004 (FTS5 `trigram` tables on SQLite, pg_trgm GIN indexes on PostgreSQL).

An index answers "which rows hold it" well when few do; a list wants only the newest page of
them. So a cheap probe first asks the index for at most PROBE_CAP matches:
- fewer: the text is rare, and the list keeps just the conversations the index names;
- as many: the text is common, and walking conversations newest first, testing each with
  LIKE, fills a page after a few rows, where the index would gather every match to sort it.
Texts shorter than a trigram (and SQLite without the FTS5 tables) always take the walk.

A text found common stays common for a while (it would take thousands of deletions to make it
rare): for COMMON_SECONDS the same text walks at once, so the next pages of a common search,
and the same search by a colleague, do not pay for the probe again. A rare text is asked of
the index every time, as its matches are the answer.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter, SQLCoreOperations

from hub.storage.idset import among
from hub.storage.tables import Conversation, Identity, Message

PROBE_CAP = 2000  # matches beyond which the newest-first walk finds a page sooner
TRIGRAM = 3  # shorter texts have no trigram to look up
COMMON_SECONDS = 60.0  # how long a text found common is walked without a probe
COMMON_KEPT = 1024  # common texts remembered per database engine, the least recent dropped
_FTS_READY = "hub.search.fts"  # per SQLite connection: whether the FTS5 tables exist
# Per engine (two databases never share a verdict) and per cap (a verdict holds for the cap it
# was found with): (cap, lowered text) -> until when.
_COMMON: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[int, str], float]] = (
    weakref.WeakKeyDictionary())


def like_pattern(text: str) -> str:
    """`text` as a LIKE pattern for "contains", its wildcards taken literally (escape `\\`)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def fts_phrase(text: str) -> str:
    """`text` as one FTS5 string: quoted, its quotes doubled, so that no character of it (`"`,
    `*`, `AND`, `NEAR(`, `:`, `^`) is query syntax. With the trigram tokenizer a phrase matches
    where the text occurs as a substring."""
    return '"' + text.replace('"', '""') + '"'


async def text_condition(session: AsyncSession, text: str) -> ColumnElement[bool]:
    """A WHERE clause on Conversation keeping those that hold `text` (see the module doc)."""
    engine = session.get_bind()
    dialect = engine.dialect.name
    if len(text) >= TRIGRAM and not _known_common(engine, text):
        if dialect == "postgresql":
            found: list[int] = await session.scalar(
                _PG_PROBE, {"p": like_pattern(text), "cap": PROBE_CAP}) or []
            if len(found) < PROBE_CAP:
                return among(Conversation.id, dialect, "found", found)
            _found_common(engine, text)
        elif await _fts_ready(session):
            phrase = fts_phrase(text)
            if await session.scalar(_SQLITE_PROBE, {"q": phrase, "cap": PROBE_CAP}) < PROBE_CAP:
                return Conversation.id.in_(_sqlite_matches(phrase))
            _found_common(engine, text)
    return _walk_condition(dialect, text)


def _known_common(engine: Any, text: str) -> bool:
    seen = _COMMON.get(engine)
    until = seen.get((PROBE_CAP, text.lower())) if seen is not None else None
    return until is not None and time.monotonic() < until


def _found_common(engine: Any, text: str) -> None:
    seen = _COMMON.setdefault(engine, OrderedDict())
    key = (PROBE_CAP, text.lower())
    seen[key] = time.monotonic() + COMMON_SECONDS
    seen.move_to_end(key)
    while len(seen) > COMMON_KEPT:
        seen.popitem(last=False)


def _walk_condition(dialect: str, text: str) -> ColumnElement[bool]:
    """The test of one conversation, for the newest-first walk."""
    pattern = like_pattern(text)
    if dialect == "sqlite":
        # SQLite's LIKE ignores ASCII case itself, as lower() does: the same rows as ILIKE,
        # without lowering every body first
        def holds(column: SQLCoreOperations[Any]) -> ColumnElement[bool]:
            return column.like(pattern, escape="\\")
    else:
        def holds(column: SQLCoreOperations[Any]) -> ColumnElement[bool]:
            return column.ilike(pattern, escape="\\")
    in_body = select(Message.id).where(Message.conversation_id == Conversation.id,
                                       holds(Message.body))
    by_address = select(Identity.id).where(Identity.contact_id == Conversation.contact_id,
                                           holds(Identity.address))
    # OFFSET 0 keeps PostgreSQL from turning the EXISTS into a hashed subplan: that would read
    # every message matching the text before the walk's first row
    return or_(holds(Conversation.subject), exists(in_body.offset(0)),
               exists(by_address.offset(0)))


def _pg_probe() -> Select[list[int]]:
    """The ids of the conversations holding the text, at most :cap of them, in one array (one
    row to read, not one per match)."""
    pattern: BindParameter[str] = bindparam("p")
    subjects = select(Conversation.id).where(Conversation.subject.ilike(pattern, escape="\\"))
    bodies = select(Message.conversation_id).where(Message.body.ilike(pattern, escape="\\"))
    addresses = (select(Conversation.id)
                 .join(Identity, Identity.contact_id == Conversation.contact_id)
                 .where(Identity.address.ilike(pattern, escape="\\")))
    hits = union_all(subjects, bodies, addresses).limit(bindparam("cap", type_=Integer))
    return select(func.array_agg(hits.subquery().c[0], type_=ARRAY(BigInteger)))


_PG_PROBE = _pg_probe()
# Counts index entries only (no row behind them is read): cheap even for a common text.
_SQLITE_PROBE = text(
    "SELECT count(*) FROM (SELECT rowid FROM conversations_fts WHERE conversations_fts MATCH :q "
    "UNION ALL SELECT rowid FROM messages_fts WHERE messages_fts MATCH :q "
    "UNION ALL SELECT rowid FROM identities_fts WHERE identities_fts MATCH :q "
    "LIMIT :cap)")


def _sqlite_matches(phrase: str) -> Select[int]:
    """Ids of the conversations the FTS5 tables name for `phrase`."""
    q: BindParameter[str] = bindparam("q", phrase)

    def fts(table: str) -> Select[int]:
        return select(literal_column("rowid", BigInteger)).select_from(text(table)).where(
            literal_column(table).op("MATCH")(q))

    subjects = fts("conversations_fts")
    bodies = select(Message.conversation_id).where(Message.id.in_(fts("messages_fts")))
    addresses = select(Conversation.id).where(Conversation.contact_id.in_(
        select(Identity.contact_id).where(Identity.id.in_(fts("identities_fts")))))
    union = union_all(subjects, bodies, addresses).subquery()
    return select(union.c[0])


async def _fts_ready(session: AsyncSession) -> bool:
    """Whether this SQLite database has the FTS5 tables (migration 0004 skips them where
    SQLite lacks the trigram tokenizer); asked once per connection."""
    connection = await session.connection()
    info = (await connection.get_raw_connection()).info
    ready = info.get(_FTS_READY)
    if ready is None:
        ready = await session.scalar(text(
            "SELECT count(*) FROM sqlite_master WHERE name = 'messages_fts'")) == 1
        info[_FTS_READY] = ready
    return bool(ready)
