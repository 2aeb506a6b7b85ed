"""`GET /api/v1/stats` and `GET /api/v1/stats.csv` (supervisors): the service figures of
hub.stats over `from`..`to` (dates, both included, UTC; default the last twelve months),
optionally one `queue` and one `channel`. Registered by hub.web.api's route table.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from aiohttp import web
from pydantic import ConfigDict, Field

from hub import stats
from hub.web.errors import ApiError
from hub.web.keys import HUB_KEY
from hub.web.parsing import read_query
from hub.web.schemas import ChannelName, QueryModel, ResponseModel

MAX_DAYS = 366 * 10  # a decade: any real report, never an unbounded scan


class StatsParams(QueryModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: date | None = Field(default=None, alias="from",
                               description="First day (YYYY-MM-DD, UTC); default: the first "
                                           "day of the month eleven months ago.")
    end: date | None = Field(default=None, alias="to",
                             description="Last day, included (YYYY-MM-DD); default: today.")
    queue: str | None = Field(default=None, min_length=1, max_length=64)
    channel: ChannelName | None = None
    by: Literal["queue", "form"] = Field(
        default="queue", description="`form`: a request filed with a form counts under "
                                     "`form:<form id>` instead of its queue.")


class FiguresOut(ResponseModel):
    service: str = Field(description="The queue the conversations are in; with `by=form`, "
                                     "`form:<form id>` for requests filed with a form.")
    month: str = Field(description="YYYY-MM (UTC) of the conversations' creation.")
    channel: str = Field(description="The conversations' channel; `all` in `totals`.")
    received: int
    resolved: int
    responded: int = Field(description="Conversations that got a first staff reply.")
    first_response_median_seconds: float | None
    first_response_p90_seconds: float | None
    resolution_median_seconds: float | None
    surveys: int = Field(description="Answered satisfaction surveys.")
    satisfaction_mean: float | None = Field(description="Mean rating, 1 (bad) to 5.")


class StatsOut(ResponseModel):
    start: date = Field(serialization_alias="from")
    end: date = Field(serialization_alias="to")
    queue: str | None
    channel: str | None
    items: list[FiguresOut] = Field(description="Per service, month and channel.")
    totals: list[FiguresOut] = Field(description="Per service and month, all channels.")


def stats_query(request: web.Request) -> stats.StatsQuery:
    params = read_query(request, StatsParams)
    default = stats.StatsQuery.default()
    query = stats.StatsQuery(params.start or default.start, params.end or default.end,
                             params.queue, params.channel, by_form=params.by == "form")
    if query.start > query.end:
        raise ApiError(422, "invalid_field", "invalid query: from: must not be after to")
    if (query.end - query.start).days > MAX_DAYS:
        raise ApiError(422, "invalid_field", "invalid query: the range is longer than ten years")
    return query


async def get_stats(request: web.Request) -> web.Response:
    query = stats_query(request)
    async with request.app[HUB_KEY].db.read() as session:
        report = await stats.report(session, query)
    out = StatsOut(start=query.start, end=query.end, queue=query.queue, channel=query.channel,
                   items=[FiguresOut.model_validate(f, from_attributes=True)
                          for f in report.items],
                   totals=[FiguresOut.model_validate(f, from_attributes=True)
                           for f in report.totals])
    return web.Response(text=out.model_dump_json(by_alias=True),
                        content_type="application/json")


async def get_stats_csv(request: web.Request) -> web.Response:
    """The same figures as CSV: every channel's lines, then the `all` lines."""
    query = stats_query(request)
    async with request.app[HUB_KEY].db.read() as session:
        report = await stats.report(session, query)
    name = f"stats-{query.start.isoformat()}-{query.end.isoformat()}.csv"
    return web.Response(text=stats.to_csv([*report.items, *report.totals]),
                        content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
