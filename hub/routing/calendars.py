"""Business calendars: opening hours per weekday, a timezone, closed dates, public holidays.

Owns "is it open now?" and business-minute arithmetic for SLA timers ("4 business hours after
this message"). Everything takes an explicit `now`, so tests drive the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holidays_pkg

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 3 * 366  # a calendar with hours somewhere finds them well within this many days
DAYS_KEPT = 1024  # local dates whose open intervals a calendar keeps worked out
UTC = ZoneInfo("UTC")

Interval = tuple[time, time]


def parse_interval(text: str) -> Interval:
    """ "08:30-17:00" -> (08:30, 17:00); raises ValueError with a readable message."""
    try:
        a, b = (part.strip() for part in text.split("-"))
        start, end = time.fromisoformat(a), time.fromisoformat(b)
    except ValueError:
        raise ValueError(f'bad opening hours {text!r}: use "HH:MM-HH:MM"') from None
    if end <= start and end != time(0):
        raise ValueError(f"bad opening hours {text!r}: the end must be after the start")
    return start, end


@dataclass(slots=True)
class Calendar:
    name: str
    tz: ZoneInfo
    hours: dict[int, tuple[Interval, ...]]  # weekday (0 = Monday) -> intervals
    closed: frozenset[date] = frozenset()
    country: str | None = None
    subdivision: str | None = None
    _holiday_cache: dict[int, frozenset[date]] = field(default_factory=dict)
    # Every message's timers and `calendar` conditions ask about the same few days: their
    # intervals are worked out once (a calendar never changes; a new rule set brings new ones).
    _days: dict[date, tuple[tuple[datetime, datetime], ...]] = field(default_factory=dict)

    def _holidays(self, year: int) -> frozenset[date]:
        if not self.country:
            return frozenset()
        if year not in self._holiday_cache:
            days = holidays_pkg.country_holidays(self.country, subdiv=self.subdivision, years=year)
            self._holiday_cache[year] = frozenset(days.keys())
        return self._holiday_cache[year]

    def is_closed_day(self, day: date) -> bool:
        return day in self.closed or day in self._holidays(day.year)

    def intervals_on(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """Open intervals of a local date as aware datetimes (an end of 00:00 means midnight)."""
        known = self._days.get(day)
        if known is None:
            if len(self._days) >= DAYS_KEPT:
                self._days.clear()
            known = self._days[day] = self._work_out(day)
        return known

    def _work_out(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        if self.is_closed_day(day):
            return ()
        return tuple(
            (datetime.combine(day, start, self.tz),
             datetime.combine(day + timedelta(days=1) if end == time(0) else day, end, self.tz))
            for start, end in self.hours.get(day.weekday(), ()))

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.tz)
        return any(a <= local < b for a, b in self.intervals_on(local.date()))

    def add_business_minutes(self, start: datetime, minutes: int) -> datetime:
        """The moment when `minutes` of opening time have passed since `start` (aware, UTC-safe)."""
        remaining = timedelta(minutes=minutes)
        local = start.astimezone(self.tz)
        day = local.date()
        for _ in range(MAX_DAYS):
            for a, b in self.intervals_on(day):
                a = max(a, local)
                if a >= b:
                    continue
                # Compare in UTC so a DST change inside the interval counts real minutes.
                span = b.astimezone(UTC) - a.astimezone(UTC)
                if remaining <= span:
                    return (a.astimezone(UTC) + remaining).astimezone(start.tzinfo)
                remaining -= span
            day += timedelta(days=1)
        raise ValueError(f"calendar {self.name!r} has no opening hours in the next {MAX_DAYS} days")

    def business_minutes_between(self, start: datetime, end: datetime) -> int:
        total = timedelta()
        day = start.astimezone(self.tz).date()
        last = end.astimezone(self.tz).date()
        while day <= last:
            for a, b in self.intervals_on(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return int(total.total_seconds() // 60)


def always_open(tz: str = "UTC") -> Calendar:
    full = ((time(0), time(0)),)
    return Calendar(name="always", tz=ZoneInfo(tz), hours={d: full for d in range(7)})
