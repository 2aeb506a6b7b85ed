"""Service figures (hub.stats) on both databases, against values worked out by hand: counts,
exact medians and 90th percentiles per service, month and channel, the date range's edges,
filters, spam and unrouted traffic left out, satisfaction, CSV, and where citizens wait now."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest

from hub import stats
from hub.app import Hub
from hub.stats import ALL_CHANNELS, Figures, StatsQuery
from hub.storage.tables import Conversation, ConversationTimer
from tests.support.adapter import inbound
from tests.support.figures import MINUTE, Seed, add_queues, seed

OCT = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
NOV = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
RANGE = StatsQuery(date(2026, 10, 1), date(2026, 11, 30))


def seeds() -> list[Seed]:
    roads_oct = [Seed(OCT, first_response=m * MINUTE) for m in (10, 20, 30, 40)]
    roads_oct[0] = Seed(OCT, first_response=10 * MINUTE, resolved=HOUR, rating=4)
    roads_oct[1] = Seed(OCT, first_response=20 * MINUTE, resolved=3 * HOUR, rating=5)
    return [
        *roads_oct,
        Seed(OCT, channel="sms", first_response=5 * MINUTE),
        *[Seed(NOV, first_response=m * MINUTE) for m in (1, 2, 100)],
        Seed(OCT, queue="taxes"),
        Seed(OCT, spam=True, first_response=MINUTE),  # spam: never counted
        Seed(OCT, queue=None),  # never routed (ignored traffic)
        Seed(datetime(2026, 9, 30, 23, 59, tzinfo=UTC)),  # the day before the range
        Seed(datetime(2026, 11, 30, 23, 59, tzinfo=UTC), queue="taxes"),  # its last minute
    ]


@pytest.fixture
async def seeded(hub: Hub) -> Hub:
    await add_queues(hub, roads="Roads", taxes="Taxes")
    await seed(hub, seeds())
    return hub


def by_key(rows: list[Figures]) -> dict[tuple[str, str, str], Figures]:
    return {(r.service, r.month, r.channel): r for r in rows}


async def test_figures_per_service_month_and_channel(seeded: Hub) -> None:
    async with seeded.db.read() as session:
        report = await stats.report(session, RANGE)
    items = by_key(report.items)
    assert set(items) == {("roads", "2026-10", "email"), ("roads", "2026-10", "sms"),
                          ("roads", "2026-11", "email"), ("taxes", "2026-10", "email"),
                          ("taxes", "2026-11", "email")}
    oct_mail = items["roads", "2026-10", "email"]
    assert (oct_mail.received, oct_mail.resolved, oct_mail.responded) == (4, 2, 4)
    assert oct_mail.first_response_median_seconds == 1500.0  # (20 + 30) / 2 minutes
    assert oct_mail.first_response_p90_seconds == 2400.0  # rank ceil(3.6) = 4: 40 minutes
    assert oct_mail.resolution_median_seconds == 7200.0  # (1 h + 3 h) / 2
    assert (oct_mail.surveys, oct_mail.satisfaction_mean) == (2, 4.5)
    nov = items["roads", "2026-11", "email"]
    assert (nov.first_response_median_seconds, nov.first_response_p90_seconds) == (120.0, 6000.0)
    assert nov.resolution_median_seconds is None and nov.satisfaction_mean is None
    taxes = items["taxes", "2026-10", "email"]
    assert (taxes.received, taxes.responded, taxes.first_response_median_seconds) == (1, 0, None)
    assert items["taxes", "2026-11", "email"].received == 1  # the range's last minute counts


async def test_totals_sum_the_channels_and_rank_them_together(seeded: Hub) -> None:
    async with seeded.db.read() as session:
        report = await stats.report(session, RANGE)
    totals = by_key(report.totals)
    oct_all = totals["roads", "2026-10", ALL_CHANNELS]
    assert oct_all.received == 5
    # 5, 10, 20, 30, 40 minutes: the median is the middle one, the p90 rank ceil(4.5) = 5.
    assert (oct_all.first_response_median_seconds, oct_all.first_response_p90_seconds) == (
        1200.0, 2400.0)
    assert sum(t.received for t in report.totals) == sum(i.received for i in report.items) == 10


async def test_filters_by_queue_and_channel(seeded: Hub) -> None:
    async with seeded.db.read() as session:
        sms = await stats.figures(session, StatsQuery(RANGE.start, RANGE.end, channel="sms"),
                                  by_channel=True)
        taxes = await stats.figures(session, StatsQuery(RANGE.start, RANGE.end, queue="taxes"),
                                    by_channel=False)
        october = await stats.figures(session, StatsQuery(date(2026, 10, 1),
                                                           date(2026, 10, 31)), by_channel=False)
    assert [(r.service, r.channel, r.received, r.first_response_median_seconds) for r in sms] == [
        ("roads", "sms", 1, 300.0)]
    assert [(r.month, r.received) for r in taxes] == [("2026-10", 1), ("2026-11", 1)]
    assert {r.month for r in october} == {"2026-10"}


async def test_csv_has_a_header_and_one_line_per_group(seeded: Hub) -> None:
    async with seeded.db.read() as session:
        report = await stats.report(session, RANGE)
    rows = list(csv.DictReader(io.StringIO(stats.to_csv(report.items))))
    assert len(rows) == 5
    first = rows[0]
    assert list(first) == list(stats.CSV_COLUMNS)
    assert (first["service"], first["month"], first["received"]) == ("roads", "2026-10", "4")
    assert rows[-1]["first_response_median_seconds"] == ""  # not measured: empty, not "None"


def test_default_range_is_the_last_twelve_months() -> None:
    query = StatsQuery.default(date(2026, 3, 17), queue="roads")
    assert (query.start, query.end, query.queue) == (date(2025, 4, 1), date(2026, 3, 17), "roads")


async def test_waiting_now_per_queue(hub: Hub) -> None:
    await add_queues(hub, roads="Roads", taxes="Taxes")
    now = datetime.now(UTC)
    oldest = now - 5 * HOUR
    ids = await seed(hub, [Seed(oldest), Seed(now - HOUR), Seed(now - 9 * HOUR, resolved=HOUR),
                           Seed(now - 9 * HOUR, spam=True)])
    async with hub.db.transaction() as session:
        session.add(ConversationTimer(conversation_id=ids[1], rule_id="sla", step="first",
                                      due_at=now + 10 * MINUTE, actions={}))
    async with hub.db.read() as session:
        rows = {w.queue: w for w in await stats.waiting(session, now + HOUR)}
        later = {w.queue: w for w in await stats.waiting(session, now)}
    roads = rows["roads"]
    assert (roads.title, roads.open, roads.unassigned, roads.at_risk) == ("Roads", 2, 2, 1)
    assert roads.oldest_waiting_since is not None
    assert abs((roads.oldest_waiting_since - oldest).total_seconds()) < 1
    assert later["roads"].at_risk == 0  # the timer is due after that horizon
    assert (rows["taxes"].open, rows["taxes"].oldest_waiting_since) == (0, None)


async def test_ratings_count_each_answer(seeded: Hub) -> None:
    async with seeded.db.read() as session:
        counted = await stats.ratings(session, RANGE)
        none = await stats.ratings(session, StatsQuery(RANGE.start, RANGE.end, channel="sms"))
    assert counted == {1: 0, 2: 0, 3: 0, 4: 1, 5: 1}
    assert sum(none.values()) == 0


async def test_by_form_groups_form_requests_by_their_form(hub: Hub) -> None:
    """A web-form request counts under `form:<id>`, an email in the same queue under the queue;
    the JSON look-up works on both databases."""
    await add_queues(hub, roads="Roads")
    form = {"form": {"id": "pothole", "fields": {"where": "12 Elm St"}}}
    accepted = [await hub.intake.accept(inbound(
        f"a{n}@example.org", "A hole", channel="webform", meta=form)) for n in range(2)]
    accepted.append(await hub.intake.accept(inbound("b@example.org", "A hole", channel="email")))
    async with hub.db.transaction() as session:
        for one in accepted:
            (await session.get_one(Conversation, one.conversation_id)).queue = "roads"
    today = datetime.now(UTC).date()
    async with hub.db.read() as session:
        rows = await stats.figures(session, StatsQuery(today, today, by_form=True),
                                   by_channel=False)
        plain = await stats.figures(session, StatsQuery(today, today), by_channel=False)
    assert [(r.service, r.received) for r in rows] == [("form:pothole", 2), ("roads", 1)]
    assert [(r.service, r.received) for r in plain] == [("roads", 3)]
