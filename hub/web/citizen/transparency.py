"""`GET /transparency`: the public figures, when `[transparency] enabled` (else 404, and the
portal does not link it). Per service (a form, by its title in the citizen's language; requests
that came otherwise by their queue's title) and month of the last twelve:
requests received and resolved, median first response and resolution times, and satisfaction
(mean rating and answers), in the citizen's language (Babel: month names, numbers, durations).

Only counts and aggregates of hub.stats are shown: no reference, name, address or text. A
month of a service with fewer than `min_group` requests is left out entirely, and a figure
measured on fewer than `min_group` conversations (say, three survey answers) is shown as
hidden, so that no one citizen's case can be read from the page; the page says so. The
figures are computed at most every five minutes (`FiguresCache`), whoever asks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from aiohttp import web
from babel.dates import format_date, format_timedelta
from babel.numbers import format_decimal

from hub import stats
from hub.forms import live_forms
from hub.stats import Figures, StatsQuery
from hub.storage.db import Database
from hub.web.citizen import i18n
from hub.web.citizen.pages import render
from hub.web.keys import HUB_KEY

if TYPE_CHECKING:
    from hub.routing.watch import RuleReloader


@dataclass(frozen=True, slots=True)
class Row:
    month: str  # the month's name in the citizen's language
    received: str
    resolved: str
    first_response: str | None  # None: hidden (too few measured)
    resolution: str | None
    satisfaction: str | None


@dataclass(frozen=True, slots=True)
class Service:
    title: str
    rows: list[Row]


def _month(month: str, language: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return format_date(date(year, number, 1), "LLLL yyyy", locale=language)


def _duration(seconds: float | None, language: str) -> str | None:
    if seconds is None:
        return None
    return format_timedelta(timedelta(seconds=seconds), threshold=1.5, locale=language)


def row(f: Figures, language: i18n.Language, min_group: int) -> Row:
    """One month of one service, each figure hidden when measured on too few."""
    code = language.code

    def shown(count: int, value: str | None) -> str | None:
        return value if count >= min_group else None

    satisfaction = None
    if f.satisfaction_mean is not None:
        satisfaction = language._("{mean} of 5 ({count} answers)",
                                  mean=format_decimal(f.satisfaction_mean, "0.0", locale=code),
                                  count=format_decimal(f.surveys, locale=code))
    return Row(month=_month(f.month, code), received=format_decimal(f.received, locale=code),
               resolved=format_decimal(f.resolved, locale=code),
               first_response=shown(f.responded, _duration(f.first_response_median_seconds,
                                                           code)),
               resolution=shown(f.resolved, _duration(f.resolution_median_seconds, code)),
               satisfaction=shown(f.surveys, satisfaction))


def services(totals: list[Figures], titles: dict[str, str], language: i18n.Language,
             min_group: int) -> tuple[list[Service], int]:
    """The services with their months that may be shown, and how many months were left out."""
    kept: dict[str, list[Row]] = {}
    hidden = 0
    for f in totals:
        if f.received < min_group:
            hidden += 1
            continue
        kept.setdefault(f.service, []).append(row(f, language, min_group))
    found = [Service(titles.get(name, name.removeprefix(stats.FORM_PREFIX)), rows)
             for name, rows in kept.items()]
    return sorted(found, key=lambda s: s.title.casefold()), hidden


@dataclass(slots=True)
class FiguresCache:
    """The page's figures for `CACHE_SECONDS`: a public page must not let anyone make the
    database aggregate a year of requests at every reload."""

    query: StatsQuery | None = None
    totals: list[Figures] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    expires: float = 0.0

    async def get(self, db: Database) -> tuple[StatsQuery, list[Figures], dict[str, str]]:
        if self.query is None or time.monotonic() >= self.expires:
            query = StatsQuery.default(by_form=True)
            async with db.read() as session:
                self.totals = await stats.figures(session, query, by_channel=False)
                self.titles = await stats.service_titles(session)
            self.query, self.expires = query, time.monotonic() + CACHE_SECONDS
        return self.query, self.totals, dict(self.titles)


def queue_titles(rules: RuleReloader | None, language: str) -> dict[str, str]:
    """Each declared queue's title in `language` (queues.toml `titles`, else `title`): the
    database holds one title per queue, the one staff read."""
    current = rules.current if rules is not None else None
    if current is None:
        return {}
    return {name: decl.public_title(language) for name, decl in current.queues.items()}


CACHE_SECONDS = 300
CACHE_KEY: web.AppKey[FiguresCache] = web.AppKey("transparency_figures", FiguresCache)


async def transparency_page(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    settings = hub.settings.transparency
    if not settings.enabled:
        raise web.HTTPNotFound()
    language = i18n.choose(request)
    query, totals, titles = await request.app[CACHE_KEY].get(hub.db)
    titles |= queue_titles(hub.rules, language.code)
    titles |= {f"{stats.FORM_PREFIX}{form_id}": form.text(form.title, language.code)
               for form_id, form in live_forms(hub.rules).items()}
    shown, hidden = services(totals, titles, language, settings.min_group)
    return render(request, "citizen/transparency.html", language, {
        "title": language._("Our figures"), "services": shown, "hidden": hidden,
        "min_group": format_decimal(settings.min_group, locale=language.code),
        "first": _month(f"{query.start:%Y-%m}", language.code),
        "last": _month(f"{query.end:%Y-%m}", language.code)})
