"""What was set aside, and re-running it: `failed` inbound spool items and `dead` outbox items.

Owns listing, showing and retrying those rows for the CLI (`hub spool ...`, `hub outbox ...`)
and, later, the supervisor API; it returns plain dataclasses and never prints. Every retry is a
guarded UPDATE (`WHERE state = 'failed'` / `'dead'`), so two concurrent retries of one item
change it once, and it writes an audit row with the error the item had.

A retried spool item is `pending` again with a fresh attempt count: the running hub's spool
worker takes it. A retried outbox item is `pending` and due now: the outbox sweeper of any
running hub hands it to a delivery job; a caller may also pass its `Jobs` to enqueue it at once
(the claim in workers/delivery.py makes the extra job harmless).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import LargeBinary, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.jobs import Jobs
from hub.model import DeliveryStatus, OutboxState, utcnow
from hub.storage.db import Database
from hub.storage.tables import Conversation, Message, OutboxItem, SpoolEntry

SPOOL = cast(Table, SpoolEntry.__table__)
OUTBOX = cast(Table, OutboxItem.__table__)
SPOOL_STATES = ("failed", "pending", "done")
OUTBOX_STATES = tuple(state.value for state in OutboxState)
ALL = "all"
PREVIEW_BYTES = 2048
RETRY_CHUNK = 500  # rows per transaction in retry-all: keeps SQLite's one writer slot short
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, bidi overrides, separators


class SetAsideError(Exception):
    """A request that cannot be done; the message is fit to show as it is."""


class NotFound(SetAsideError):
    pass


class NotRetryable(SetAsideError):
    pass


@dataclass(frozen=True, slots=True)
class SpoolSummary:
    id: int
    channel: str
    state: str
    attempts: int
    last_error: str | None
    received_at: datetime
    processed_at: datetime | None
    size: int | None  # payload bytes; None once worked (the payload is dropped then)


@dataclass(frozen=True, slots=True)
class SpoolDetail(SpoolSummary):
    dedupe_key: str
    envelope: dict[str, Any]
    next_attempt_at: datetime | None
    message_id: int | None
    preview: str  # the payload's first bytes as safe text (see safe_text)
    preview_bytes: int  # how many bytes the preview shows


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    id: int
    message_id: int
    conversation_reference: str | None
    channel: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Retried:
    kind: str  # "spool" or "outbox"
    id: int
    previous_error: str | None
    previous_attempts: int
    enqueued: bool = False  # outbox only: handed to a delivery job at once


def safe_text(text: str, *, multiline: bool = True) -> str:
    """Text that cannot drive a terminal: control and format characters (ESC, CR, bidi
    overrides, ...) become visible escapes. Newlines and tabs stay unless `multiline` is off."""
    if multiline:
        text = text.replace("\r\n", "\n")
    keep = "\n\t" if multiline else ""
    return "".join(_escape(ch) if ch not in keep and unicodedata.category(ch) in _UNSAFE else ch
                   for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def to_jsonable(value: Any) -> Any:
    """A dataclass (or a list of them) as JSON-ready data; times in ISO 8601."""
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    data = dataclasses.asdict(value)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}


def _check_state(state: str, known: Sequence[str]) -> None:
    if state != ALL and state not in known:
        raise SetAsideError(f"unknown state {state!r} (one of {', '.join([*known, ALL])})")


# -- spool ------------------------------------------------------------------------------------

_SPOOL_SUMMARY = (SPOOL.c.id, SPOOL.c.channel, SPOOL.c.state, SPOOL.c.attempts,
                  SPOOL.c.last_error, SPOOL.c.received_at, SPOOL.c.processed_at,
                  func.length(SPOOL.c.payload).label("size"))


async def list_spool(db: Database, *, state: str = "failed", limit: int = 50) -> list[SpoolSummary]:
    """Spool items in `state` (or "all"), newest first."""
    _check_state(state, SPOOL_STATES)
    query = select(*_SPOOL_SUMMARY).order_by(SPOOL.c.id.desc()).limit(limit)
    if state != ALL:
        query = query.where(SPOOL.c.state == state)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [SpoolSummary(*row) for row in rows]


async def show_spool(db: Database, spool_id: int, *,
                     preview_bytes: int = PREVIEW_BYTES) -> SpoolDetail:
    # Only the payload's first bytes leave the database: a mail may be tens of megabytes.
    head = func.substr(SPOOL.c.payload, 1, preview_bytes, type_=LargeBinary).label("head")
    async with db.read() as session:
        row = (await session.execute(
            select(*_SPOOL_SUMMARY, SPOOL.c.dedupe_key, SPOOL.c.envelope,
                   SPOOL.c.next_attempt_at, SPOOL.c.message_id, head)
            .where(SPOOL.c.id == spool_id))).one_or_none()
    if row is None:
        raise NotFound(f"no spool item {spool_id}")
    fields = dict(row._mapping)
    prefix = bytes(fields.pop("head") or b"")
    return SpoolDetail(**fields, preview=safe_text(prefix.decode("utf-8", errors="replace")),
                       preview_bytes=len(prefix))


async def retry_spool(db: Database, spool_id: int, *, actor: str = "cli") -> Retried:
    """Set one failed item back to pending, once; NotFound / NotRetryable otherwise."""
    async with db.transaction() as session:
        done = await _retry_spool_rows(session, [spool_id], actor)
        if not done:
            raise await _refusal(session, SPOOL, "spool", spool_id, "failed")
    return done[0]


async def retry_all_spool(db: Database, *, actor: str = "cli") -> list[Retried]:
    """Set every failed item back to pending, oldest first, a chunk per transaction."""
    retried: list[Retried] = []
    after = 0
    while True:
        async with db.transaction() as session:
            ids = list(await session.scalars(
                select(SPOOL.c.id).where(SPOOL.c.state == "failed", SPOOL.c.id > after)
                .order_by(SPOOL.c.id).limit(RETRY_CHUNK)))
            if not ids:
                return retried
            retried += await _retry_spool_rows(session, ids, actor, bulk=True)
        after = ids[-1]


async def _retry_spool_rows(session: AsyncSession, ids: list[int], actor: str,
                            *, bulk: bool = False) -> list[Retried]:
    # Locked in id order (PostgreSQL; SQLite has one writer anyway), so concurrent retry-alls
    # queue behind each other instead of deadlocking, and the later one finds them pending.
    before = {row.id: row for row in (await session.execute(
        select(SPOOL.c.id, SPOOL.c.last_error, SPOOL.c.attempts)
        .where(SPOOL.c.id.in_(ids), SPOOL.c.state == "failed")
        .order_by(SPOOL.c.id).with_for_update())).all()}
    if not before:
        return []
    # The state guard decides in any case: a retry that got there first leaves it nothing.
    changed = set(await session.scalars(
        update(SPOOL).where(SPOOL.c.id.in_(list(before)), SPOOL.c.state == "failed")
        .values(state="pending", attempts=0, next_attempt_at=None, last_error=None)
        .returning(SPOOL.c.id)))
    retried = [Retried("spool", i, before[i].last_error, before[i].attempts)
               for i in sorted(changed)]
    for item in retried:
        audit.record(session, actor, "spool.retry", "spool", item.id, bulk=bulk,
                     previous_error=item.previous_error, previous_attempts=item.previous_attempts)
    return retried


# -- outbox -----------------------------------------------------------------------------------

async def list_outbox(db: Database, *, state: str = "dead", limit: int = 50) -> list[OutboxSummary]:
    """Outbox items in `state` (or "all"), most recently changed first."""
    _check_state(state, OUTBOX_STATES)
    query = (select(OUTBOX.c.id, OUTBOX.c.message_id, Conversation.reference, OUTBOX.c.channel,
                    OUTBOX.c.state, OUTBOX.c.attempts, OUTBOX.c.last_error,
                    OUTBOX.c.next_attempt_at, OUTBOX.c.updated_at)
             .join(Message, Message.id == OUTBOX.c.message_id)
             .outerjoin(Conversation, Conversation.id == Message.conversation_id)
             .order_by(OUTBOX.c.updated_at.desc(), OUTBOX.c.id.desc()).limit(limit))
    if state != ALL:
        query = query.where(OUTBOX.c.state == state)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [OutboxSummary(*row) for row in rows]


async def retry_outbox(db: Database, outbox_id: int, *, actor: str = "cli",
                       jobs: Jobs | None = None) -> Retried:
    """Make one dead item pending and due now, once; with `jobs`, also enqueue it at once."""
    dead = OutboxState.DEAD.value
    now = utcnow()
    async with db.transaction() as session:
        before = (await session.execute(
            select(OUTBOX.c.message_id, OUTBOX.c.last_error, OUTBOX.c.attempts)
            .where(OUTBOX.c.id == outbox_id, OUTBOX.c.state == dead))).one_or_none()
        # As for the spool: the state guard decides, whatever the read above saw.
        if before is None or await session.scalar(
                update(OUTBOX).where(OUTBOX.c.id == outbox_id, OUTBOX.c.state == dead)
                .values(state=OutboxState.PENDING.value, attempts=0, next_attempt_at=now,
                        locked_until=None, last_error=None, updated_at=now)
                .returning(OUTBOX.c.id)) is None:
            raise await _refusal(session, OUTBOX, "outbox", outbox_id, dead)
        # Delivery status only moves forward (hub.status), and `failed` outranks `sent`: the
        # message is queued again, or a successful resend would still show as failed.
        await session.execute(update(Message).where(Message.id == before.message_id)
                              .values(delivery_status=DeliveryStatus.QUEUED.value,
                                      delivery_error=None))
        audit.record(session, actor, "outbox.retry", "outbox", outbox_id,
                     message_id=before.message_id, previous_error=before.last_error,
                     previous_attempts=before.attempts)
    enqueued = jobs is not None and await jobs.enqueue_delivery([outbox_id]) > 0
    return Retried("outbox", outbox_id, before.last_error, before.attempts, enqueued=enqueued)


async def _refusal(session: AsyncSession, table: Table, kind: str, item_id: int,
                   wanted: str) -> SetAsideError:
    state = await session.scalar(select(table.c.state).where(table.c.id == item_id))
    if state is None:
        return NotFound(f"no {kind} item {item_id}")
    return NotRetryable(f"{kind} item {item_id} is {state}, not {wanted}")
