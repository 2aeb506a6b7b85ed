"""Service figures: how many requests came in, how fast staff answered and resolved them, and
how satisfied citizens were, per service and month (and per channel), over a date range.

A *service* is the queue a conversation is in (forms route to their default queue, so a form's
requests count under it), or, with `by_form`, the form it was filed with (`form:<form id>`, web
forms and Open311; other conversations keep their queue). A conversation counts in the month
(UTC) it was created, which is when its first inbound message arrived; spam and never-routed
traffic (no queue) are left out.

- received: conversations created in the range;
- resolved: of those, the ones resolved since (`resolved_at` is set; a later close keeps it);
- first response: `first_response_at - created_at`, the first staff reply (not an automatic
  acknowledgment) after the first inbound message; median and 90th percentile;
- resolution: `resolved_at - created_at`, median;
- satisfaction: answered surveys (hub.survey) of those conversations, count and mean (1-5).

Everything is aggregated in the database with portable SQL (window functions, which SQLite and
PostgreSQL both have): no conversation row travels to Python. Percentiles are exact: the median
is the mean of the middle one or two values, the 90th percentile the nearest rank.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Select,
    and_,
    case,
    extract,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import CTE

from hub.model import ConversationStatus, Direction
from hub.routing.timers import pending_due_before
from hub.storage.tables import Conversation, Message, Queue, Survey

ALL_CHANNELS = "all"  # the channel of a row that sums every channel (CSV, dashboard)
FORM_PREFIX = "form:"  # a service that is a form: "form:pothole"
DEFAULT_MONTHS = 12


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """The conversations to count: created from `start` to `end` (both days included, UTC),
    optionally in one queue and on one channel."""

    start: date
    end: date
    queue: str | None = None
    channel: str | None = None
    by_form: bool = False

    @classmethod
    def default(cls, today: date | None = None, **filters: Any) -> StatsQuery:
        """The last `DEFAULT_MONTHS` calendar months, this one included."""
        today = today or datetime.now(UTC).date()
        month = today.year * 12 + today.month - 1 - (DEFAULT_MONTHS - 1)
        return cls(date(month // 12, month % 12 + 1, 1), today, **filters)


@dataclass(frozen=True, slots=True)
class Figures:
    """One group's figures; durations in seconds, None when nothing was measured."""

    service: str
    month: str  # YYYY-MM
    channel: str  # ALL_CHANNELS for the sum of every channel
    received: int = 0
    resolved: int = 0
    responded: int = 0  # conversations with a first staff reply
    first_response_median_seconds: float | None = None
    first_response_p90_seconds: float | None = None
    resolution_median_seconds: float | None = None
    surveys: int = 0  # answered surveys
    satisfaction_mean: float | None = None


CSV_COLUMNS = tuple(f.name for f in fields(Figures))


@dataclass(frozen=True, slots=True)
class Report:
    query: StatsQuery
    items: list[Figures]  # per service, month and channel
    totals: list[Figures]  # per service and month, every channel together


async def report(session: AsyncSession, query: StatsQuery) -> Report:
    return Report(query, await figures(session, query, by_channel=True),
                  await figures(session, query, by_channel=False))


async def figures(session: AsyncSession, query: StatsQuery, *,
                  by_channel: bool) -> list[Figures]:
    """The figures per service and month (and channel with `by_channel`), sorted."""
    base = _base(session.get_bind().dialect.name, query)
    keys = ["service", "month"] + (["channel"] if by_channel else [])
    counts = await session.execute(_counts(base, keys))
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in counts:
        key, values = tuple(row[: len(keys)]), row[len(keys):]
        rows[key] = dict(zip(("received", "resolved", "responded", "surveys",
                              "satisfaction_mean"), values, strict=True))
    for column, prefix in (("first_s", "first_response"), ("resolve_s", "resolution")):
        for row in await session.execute(_percentiles(base, keys, column)):
            key, (median, p90) = tuple(row[: len(keys)]), row[len(keys):]
            rows[key][f"{prefix}_median_seconds"] = median
            if prefix == "first_response":
                rows[key]["first_response_p90_seconds"] = p90
    return [_figures(key, values, by_channel) for key, values in sorted(rows.items())]


def _figures(key: tuple[str, ...], values: dict[str, Any], by_channel: bool) -> Figures:
    def seconds(name: str) -> float | None:
        value = values.get(name)
        return None if value is None else round(float(value), 1)

    mean = values.get("satisfaction_mean")
    return Figures(
        service=key[0], month=key[1], channel=key[2] if by_channel else ALL_CHANNELS,
        received=int(values["received"] or 0), resolved=int(values["resolved"] or 0),
        responded=int(values["responded"] or 0),
        first_response_median_seconds=seconds("first_response_median_seconds"),
        first_response_p90_seconds=seconds("first_response_p90_seconds"),
        resolution_median_seconds=seconds("resolution_median_seconds"),
        surveys=int(values["surveys"] or 0),
        satisfaction_mean=None if mean is None else round(float(mean), 2))


def _seconds(dialect: str, later: Any, earlier: Any) -> ColumnElement[Any]:
    """`later - earlier` in seconds (NULL when either is NULL)."""
    if dialect == "postgresql":
        return extract("epoch", later - earlier)
    # SQLite keeps UTC as text; julianday() reads it as days.
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def _month(dialect: str, moment: Any) -> ColumnElement[str]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", moment), "YYYY-MM")
    return func.strftime("%Y-%m", moment)


def _bounds(query: StatsQuery) -> tuple[datetime, datetime]:
    start = datetime.combine(query.start, time(), UTC)
    return start, datetime.combine(query.end + timedelta(days=1), time(), UTC)


def _base(dialect: str, query: StatsQuery) -> CTE:
    """One row per counted conversation: its group keys and what is measured on it."""
    start, end = _bounds(query)
    conditions = [Conversation.created_at >= start, Conversation.created_at < end,
                  Conversation.spam.is_(False), Conversation.queue.is_not(None)]
    if query.queue:
        conditions.append(Conversation.queue == query.queue)
    if query.channel:
        conditions.append(Conversation.channel == query.channel)
    created = Conversation.created_at
    service = _form_or_queue() if query.by_form else Conversation.queue
    return (
        select(service.label("service"), _month(dialect, created).label("month"),
               Conversation.channel.label("channel"),
               Conversation.resolved_at.label("resolved_at"),
               _seconds(dialect, Conversation.first_response_at, created).label("first_s"),
               _seconds(dialect, Conversation.resolved_at, created).label("resolve_s"),
               Survey.rating.label("rating"))
        .outerjoin(Survey, and_(Survey.conversation_id == Conversation.id,
                                Survey.answered_at.is_not(None)))
        .where(*conditions)
        .cte("counted"))


def _form_or_queue() -> ColumnElement[Any]:
    """`form:<id>` of the form the conversation's first inbound message came from, else the
    conversation's queue (a correlated look-up on the messages' conversation index)."""
    form_id = (select(type_coerce(Message.meta, JSON)["form"]["id"].as_string())
               .where(Message.conversation_id == Conversation.id,
                      Message.direction == Direction.INBOUND.value)
               .order_by(Message.id).limit(1).correlate(Conversation).scalar_subquery())
    return func.coalesce(literal(FORM_PREFIX).concat(form_id), Conversation.queue)


def _counts(base: CTE, keys: Sequence[str]) -> Select[Any]:
    groups = [base.c[k] for k in keys]
    return (select(*groups, func.count(), func.count(base.c.resolved_at),
                   func.count(base.c.first_s), func.count(base.c.rating),
                   func.avg(base.c.rating))
            .group_by(*groups))


def _percentiles(base: CTE, keys: Sequence[str], column: str) -> Select[Any]:
    """Per group: the median and the 90th percentile (nearest rank) of `column`, ranking the
    measured values of each group with window functions."""
    groups = [base.c[k] for k in keys]
    value = base.c[column]
    ranked = (select(*groups, value.label("v"),
                     func.row_number().over(partition_by=groups, order_by=value).label("rn"),
                     func.count().over(partition_by=groups).label("n"))
              .where(value.is_not(None)).subquery("ranked"))
    rn, n, v = ranked.c.rn, ranked.c.n, ranked.c.v
    middle = or_(rn == (n + 1) // 2, rn == (n + 2) // 2)
    p90 = rn == (n * 9 + 9) // 10  # ceil(0.9 n) in integer arithmetic
    outer = [ranked.c[k] for k in keys]
    return (select(*outer, func.avg(case((middle, v))), func.max(case((p90, v))))
            .group_by(*outer))


def to_csv(rows: Iterable[Figures]) -> str:
    """The figures as CSV (RFC 4180, a header line); empty cells for what was not measured."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, name) is None else getattr(row, name)
                         for name in CSV_COLUMNS])
    return out.getvalue()


# -- where citizens wait now ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waiting:
    """A queue now: open conversations, those nobody holds, the oldest one waiting for staff
    (open: the citizen spoke last) and those whose SLA timer is overdue or due soon."""

    queue: str
    title: str
    open: int
    unassigned: int
    oldest_waiting_since: datetime | None
    at_risk: int


async def waiting(session: AsyncSession, risk_before: datetime) -> list[Waiting]:
    """Every queue's waiting figures, in one grouped query (queues with nothing open too)."""
    since = func.coalesce(Conversation.last_inbound_at, Conversation.created_at)
    rows = await session.execute(
        select(Conversation.queue, func.count(),
               func.sum(case((Conversation.assignee_id.is_(None), 1), else_=0)),
               func.min(since),
               func.sum(case((pending_due_before(risk_before), 1), else_=0)))
        .where(Conversation.status == ConversationStatus.OPEN.value,
               Conversation.spam.is_(False), Conversation.queue.is_not(None))
        .group_by(Conversation.queue))
    found = {queue: (int(n or 0), int(free or 0), oldest, int(risky or 0))
             for queue, n, free, oldest, risky in rows}
    titles = await service_titles(session)
    names = sorted(set(titles) | set(found))
    return [Waiting(name, titles.get(name, name), *_oldest(found.get(name, (0, 0, None, 0))))
            for name in names]


def _oldest(values: tuple[int, int, Any, int]) -> tuple[int, int, datetime | None, int]:
    """min() over a UTC column comes back as text on SQLite: read it as UTC."""
    n, free, oldest, risky = values
    if isinstance(oldest, str):
        oldest = datetime.fromisoformat(oldest)
    if isinstance(oldest, datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return n, free, oldest, risky


async def service_titles(session: AsyncSession) -> dict[str, str]:
    """Queue name -> its title, for showing services."""
    return {name: title for name, title in await session.execute(select(Queue.name, Queue.title))}


async def ratings(session: AsyncSession, query: StatsQuery) -> dict[int, int]:
    """How many answered surveys gave each rating 1-5, for the range's conversations."""
    base = _base(session.get_bind().dialect.name, query)
    rows = await session.execute(
        select(base.c.rating, func.count()).where(base.c.rating.is_not(None))
        .group_by(base.c.rating))
    found = {int(rating): int(n) for rating, n in rows}
    return {rating: found.get(rating, 0) for rating in range(1, 6)}
