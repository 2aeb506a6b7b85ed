"""The supervisors' dashboard, `GET /staff/dashboard` (supervisors and admins; agents get 404
as for the administration pages): where citizens wait now (open, unassigned, the oldest
waiting, SLA at risk per queue), the service figures of hub.stats over a chosen range with
charts (hub.web.charts: server-side SVG, each with a table of the same figures), satisfaction
from the surveys, and `GET /staff/dashboard.csv`, the same figures as the API's CSV.

The page speaks the staff member's language (hub.web.staff.i18n): the template through `_`,
the texts made here (chart titles, table headers, messages) through `language._`, each English
text marked with N_ so that it is found in the catalog (hub/locales).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from pydantic import ValidationError

from hub import stats
from hub.forms import live_forms
from hub.model import utcnow
from hub.service import SUPERVISORS
from hub.stats import Figures, StatsQuery
from hub.web.charts import Chart, bar_chart
from hub.web.citizen.i18n import N_
from hub.web.keys import HUB_KEY
from hub.web.schemas import ChannelName
from hub.web.staff import i18n
from hub.web.staff.guard import signed_in
from hub.web.staff.pages import frame
from hub.web.staff.queries import ListParams
from hub.web.staff.sla import risk_horizon
from hub.web.stats_api import MAX_DAYS, StatsParams

NONE = N_("none")  # a figure that was not measured
Language = i18n.Language
CHANNELS: tuple[str, ...] = ChannelName.__args__  # type: ignore[attr-defined]


def supervisors_only(request: web.Request) -> None:
    if signed_in(request).staff.role not in SUPERVISORS:
        raise web.HTTPNotFound()


def duration(seconds: float | None, none: str = NONE) -> str:
    """A duration for people: "45 min", "3 h 20 min", "2 d 4 h"; `none` when not measured
    (the units are the international symbols, the same in every language)."""
    if seconds is None:
        return none
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


UNUSABLE = N_("Those dates or filters could not be used (dates are YYYY-MM-DD); showing the "
              "last twelve months.")
BAD_ORDER = N_("The first day must come before the last, within ten years.")


def read_range(query: dict[str, str]) -> tuple[StatsQuery, str | None]:
    """The figures' range and filters from the page's form; what cannot be used falls back to
    the default, with a message (an English msgid) saying so."""
    try:
        params = StatsParams.model_validate({k: v for k, v in query.items() if v})
    except ValidationError:
        return StatsQuery.default(), UNUSABLE
    default = StatsQuery.default()
    chosen = StatsQuery(params.start or default.start, params.end or default.end,
                        params.queue, params.channel, by_form=params.by == "form")
    if chosen.start > chosen.end or (chosen.end - chosen.start).days > MAX_DAYS:
        return default, BAD_ORDER
    return chosen, None


def months(query: StatsQuery) -> list[str]:
    """Every month (YYYY-MM) the range touches."""
    first = query.start.year * 12 + query.start.month - 1
    last = query.end.year * 12 + query.end.month - 1
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(first, last + 1)]


@dataclass(frozen=True, slots=True)
class Table:
    """A chart's figures: one row per month, one column per service."""

    caption: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]
    row_header: str


@dataclass(frozen=True, slots=True)
class Figure:
    chart: Chart
    table: Table


def figure(title: str, description: str, totals: Sequence[Figures], month_labels: list[str],
           titles: dict[str, str], value: Callable[[Figures], float | None],
           shown: Callable[[float | None], str], *, y_title: str = "",
           counts: bool = False, row_header: str = "Month") -> Figure:
    """A chart of `value` per month and service, with its table (texts already translated)."""
    services = sorted({t.service for t in totals})
    found = {(t.service, t.month): value(t) for t in totals}
    series = {titles.get(s, s): [found.get((s, m)) for m in month_labels] for s in services}
    chart = bar_chart(title, description, month_labels, series, y_title=y_title, counts=counts)
    rows = [(m, [shown(found.get((s, m))) for s in services]) for m in month_labels]
    return Figure(chart, Table(title, [titles.get(s, s) for s in services], rows, row_header))


def _number(none: str) -> Callable[[float | None], str]:
    return lambda value: none if value is None else f"{value:g}"


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


CHARTS = (  # title and description of each chart, in the order of `figures`
    (N_("Requests received per month"), N_("Conversations created each month, per queue.")),
    (N_("Median first response per month (hours)"),
     N_("Time from the citizen's first message to the first staff reply, median.")),
    (N_("Median resolution time per month (hours)"),
     N_("Time from the first message to resolution, median.")),
    (N_("Satisfaction per month (mean rating, 1 to 5)"),
     N_("Mean of the answered surveys' ratings.")),
)


def figures(report: stats.Report, titles: dict[str, str], language: Language) -> list[Figure]:
    labels = months(report.query)
    totals = report.totals
    _ = language._
    shown, hours, month = _number(_(NONE)), _("hours"), _("Month")
    values: list[tuple[Callable[[Figures], float | None], str]] = [
        (lambda t: t.received, ""),
        (lambda t: _hours(t.first_response_median_seconds), hours),
        (lambda t: _hours(t.resolution_median_seconds), hours),
        (lambda t: t.satisfaction_mean, ""),
    ]
    return [figure(_(title), _(description), totals, labels, titles, value, shown,
                   y_title=y_title, counts=index == 0, row_header=month)
            for index, ((title, description), (value, y_title))
            in enumerate(zip(CHARTS, values, strict=True))]


def ratings_figure(counted: dict[int, int], language: Language) -> Figure:
    _ = language._
    labels = [str(r) for r in counted]
    title, answers = _("Survey answers by rating"), _("Answers")
    chart = bar_chart(title, _("How many citizens gave each rating, 1 (bad) to 5 (very good)."),
                      labels, {answers: list(counted.values())}, counts=True)
    table = Table(title, [answers],
                  [(label, [str(n)]) for label, n in zip(labels, counted.values(), strict=True)],
                  row_header=_("Rating"))
    return Figure(chart, table)


def _form_values(query: StatsQuery) -> dict[str, str]:
    return {"from": query.start.isoformat(), "to": query.end.isoformat(),
            "queue": query.queue or "", "channel": query.channel or "",
            "by": "form" if query.by_form else ""}


async def dashboard(request: web.Request) -> web.Response:
    supervisors_only(request)
    query, error = read_range(dict(request.query))
    hub = request.app[HUB_KEY]
    language = i18n.gettext(request)
    none = language._(NONE)
    now = utcnow()
    async with hub.db.read() as session:
        waiting = await stats.waiting(
            session, risk_horizon(hub.settings.routing.sla_risk_minutes, now))
        report = await stats.report(session, query)
        counted = await stats.ratings(session, query)
        titles = await stats.service_titles(session)
        context = await frame(request, session, ListParams())
    values = _form_values(query)
    queues = sorted(titles.items())
    titles |= {f"{stats.FORM_PREFIX}{form_id}": form.text(form.title, language.code)
               for form_id, form in live_forms(hub.rules).items()}
    return aiohttp_jinja2.render_template("staff/dashboard.html", request, {
        **context, "title": language._("Dashboard"), "waiting": waiting, "now": now,
        "error": language._(error) if error else None,
        "form": values, "all_queues": queues, "all_channels": CHANNELS,
        "csv_href": "/staff/dashboard.csv?" + urlencode({k: v for k, v in values.items() if v}),
        "figures": figures(report, titles, language),
        "ratings": ratings_figure(counted, language), "none_text": none,
        "items": report.items, "titles": titles,
        "duration": lambda seconds: duration(seconds, none),
        "waited": lambda since: _waited(since, now, none)})


def _waited(since: datetime | None, now: datetime, none: str) -> str:
    return none if since is None else duration((now - since).total_seconds(), none)


async def dashboard_csv(request: web.Request) -> web.Response:
    supervisors_only(request)
    query, _ = read_range(dict(request.query))
    async with request.app[HUB_KEY].db.read() as session:
        report = await stats.report(session, query)
    name = f"stats-{query.start.isoformat()}-{query.end.isoformat()}.csv"
    return web.Response(text=stats.to_csv([*report.items, *report.totals]),
                        content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

