"""Pydantic models of the rule folder's TOML files (settings, queues, calendars, rules, tests).

Unknown keys are errors everywhere (`extra="forbid"`): a typo must never be silently ignored.
Conditions (`when`) are validated by compile.py, which owns the field/operator vocabulary.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.model import ConversationStatus, Priority

PHASES = ("intake", "route", "enrich", "timers")
Phase = Literal["intake", "route", "enrich", "timers"]
PriorityName = Literal["low", "normal", "high", "urgent"]
StatusName = Literal["open", "pending", "resolved", "closed"]
STRATEGIES = ("manual", "round_robin", "least_busy")

assert set(PriorityName.__args__) == {p.value for p in Priority}  # type: ignore[attr-defined]
assert set(StatusName.__args__) == {s.value for s in ConversationStatus}  # type: ignore[attr-defined]

_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")  # "es", "pt-BR"
_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)?\s*$")
_UNIT_MINUTES = {None: 1, "m": 1, "min": 1, "h": 60, "d": 1440, "w": 10080}


def parse_minutes(value: int | str, *, allow_days: bool = True) -> int:
    """ "90m", "4h", "2d", 30 -> minutes. Days/weeks are wall-clock, so not for business time."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "30m", "4h" or "1d"')
    if isinstance(value, int):
        minutes = value
    else:
        m = _DURATION.match(value)
        if not m:
            raise ValueError(f'bad duration {value!r}: use e.g. "30m", "4h" or "1d"')
        if not allow_days and m.group(2) in ("d", "w"):
            raise ValueError(f'{value!r}: business time is counted in minutes or hours ("8h")')
        minutes = int(m.group(1)) * _UNIT_MINUTES[m.group(2)]
    if minutes <= 0:
        raise ValueError("a duration must be positive")
    return minutes


_EXPECTED = re.compile(r"^\s*(\d{1,4})\s*(minutes?|hours?|days?|weeks?|m|min|h|d|w)\s*$",
                       re.IGNORECASE)
_EXPECTED_UNIT = {"m": 1, "min": 1, "minute": 1, "h": 60, "hour": 60, "d": 1440, "day": 1440,
                  "w": 10080, "week": 10080}


def expected_minutes(value: str) -> int:
    """A queue's `expected_response` ("2 days", "4 hours", "90 minutes", "1 week", "2d")
    in minutes; wall-clock time, as a citizen counts it."""
    m = _EXPECTED.match(value)
    if not m:
        raise ValueError(f'bad expected_response {value!r}: write e.g. "2 days" or "4 hours"')
    unit = m.group(2).lower()
    minutes = int(m.group(1)) * _EXPECTED_UNIT[unit.removesuffix("s") if len(unit) > 3 else unit]
    if minutes <= 0:
        raise ValueError("expected_response must be positive")
    return minutes


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(Strict):
    timezone: str = "UTC"
    default_language: str = "en"
    languages: list[str] = Field(default_factory=lambda: ["en"])
    phone_region: str = "US"  # for national-format numbers in lists
    max_auto_replies_per_conversation: int = Field(default=3, ge=0)
    max_auto_replies_per_message: int = Field(default=1, ge=0)


class QueueDecl(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str = ""
    strategy: Literal["manual", "round_robin", "least_busy"] = "manual"
    capacity: int = Field(default=0, ge=0)  # open conversations per agent; 0: no limit
    calendar: str | None = None
    # round_robin / least_busy choose among the members with a live workspace, or among all
    assign_to: Literal["all", "online"] = "all"
    # What the tracking page promises citizens, e.g. "2 days" or "4 hours" (expected_minutes).
    expected_response: str | None = None
    # The queue's name as citizens read it, per language: `titles = { es = "Calles" }`. Shown
    # on /transparency (else `title`) and, only for a queue that has them, on the tracking
    # page: a queue meant for staff alone ("VIP", "escalations") is never named to a citizen.
    # (language, title) pairs: a tuple, so that a declaration stays hashable like the others.
    titles: tuple[tuple[str, str], ...] = ()

    @field_validator("expected_response")
    @classmethod
    def _expected(cls, value: str | None) -> str | None:
        if value is not None:
            expected_minutes(value)
        return value

    @field_validator("titles", mode="before")
    @classmethod
    def _titles(cls, value: Any) -> tuple[tuple[str, str], ...]:
        if isinstance(value, tuple):
            return value
        if not isinstance(value, dict):
            raise ValueError('titles is a table of language = "title", e.g. { es = "Calles" }')
        for code, text in value.items():
            if not _LANGUAGE.match(code):
                raise ValueError(f'{code!r} is not a language code: write e.g. es = "..."')
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"the {code!r} title must be a text that is not empty")
        return tuple(value.items())

    def _title_in(self, language: str) -> str | None:
        found = dict(self.titles)
        return found.get(language) or found.get(language.split("-")[0])

    def citizen_title(self, language: str) -> str | None:
        """The title citizens read in `language` (else `title`); None for a queue without
        `titles`."""
        if not self.titles:
            return None
        return self._title_in(language) or self.title or self.titles[0][1]

    def public_title(self, language: str) -> str:
        """The title on public figures: `titles` in `language`, else `title`, else the name."""
        return self._title_in(language) or self.title or self.name


class QueuesFile(Strict):
    queue: list[QueueDecl] = Field(default_factory=list)


class CalendarFile(Strict):
    timezone: str = "UTC"
    country: str | None = None  # public holidays from the `holidays` package
    subdivision: str | None = None
    closed: list[str] = Field(default_factory=list)  # "YYYY-MM-DD"
    hours: dict[str, list[str]] = Field(default_factory=dict)  # "mon" -> ["08:30-12:00", ...]


class TagOps(Strict):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class AutoReplySpec(Strict):
    template: str
    once_per: str | int | None = None  # required; checked by the loader with a clear message
    scope: Literal["contact", "conversation"] = "contact"


class NotifySpec(Strict):
    email: str | None = None
    webhook: str | None = None
    text: str = "Conversation {{ reference }} needs attention ({{ rule }})."

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s]+$", v):
            raise ValueError("webhook must be an http(s) URL")
        return v


class StepSpec(Strict):
    after: str | int  # business minutes (or "4h") with no staff reply
    name: str | None = None
    queue: str | None = None
    priority: PriorityName | None = None
    tags: TagOps | None = None
    notify: NotifySpec | list[NotifySpec] | None = None


class Actions(Strict):
    queue: str | None = None
    priority: PriorityName | None = None
    tags: TagOps | None = None
    assign: str | None = None  # a staff email, or "@strategy"
    status: StatusName | None = None
    spam: bool = False
    stop: bool = False
    auto_reply: AutoReplySpec | None = None
    notify: NotifySpec | list[NotifySpec] | None = None
    escalate: list[StepSpec] | None = None

    @field_validator("assign")
    @classmethod
    def _assign(cls, v: str | None) -> str | None:
        if v is not None and v != "@strategy" and not re.match(r"^[^@\s]+@[^@\s]+$", v):
            raise ValueError('assign takes a staff email or "@strategy"')
        return v


class RuleModel(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    phase: Phase = "route"
    order: int | None = None
    description: str = ""
    default: bool = False
    enabled: bool = True
    calendar: str | None = None  # the business clock for `escalate` steps
    when: dict[str, Any] = Field(default_factory=dict)
    then: Actions = Field(default_factory=Actions)


class TestMessage(Strict):
    channel: str = "email"
    sender: str = "citizen@example.org"
    text: str = ""
    subject: str | None = None
    recipient: str | None = None
    sender_name: str | None = None
    language: str | None = None
    automatic: bool = False
    attachments: list[str] = Field(default_factory=list)  # content types
    # a web form's answers, as hub.forms.submit puts them in meta: { id = "...", fields = {...} }
    form: dict[str, Any] | None = None


class TestConversation(Strict):
    is_new: bool = True
    status: StatusName = "open"
    queue: str | None = None
    priority: PriorityName = "normal"
    tags: list[str] = Field(default_factory=list)
    auto_replies_sent: int = 0


class TestExpect(Strict):
    queue: str | None = None
    priority: PriorityName | None = None
    tags: list[str] | None = None  # must all be added
    no_tags: list[str] | None = None  # must not be added
    status: StatusName | None = None
    spam: bool | None = None
    stopped: bool | None = None
    auto_reply: str | bool | None = None  # template name, or false for none
    fired: list[str] = Field(default_factory=list)
    not_fired: list[str] = Field(default_factory=list)
    timers: list[str] | None = None  # "rule_id:step"


class TestCase(Strict):
    name: str
    now: str | None = None  # ISO datetime with offset; default: a Tuesday 10:00 UTC
    message: TestMessage = Field(default_factory=TestMessage)
    conversation: TestConversation = Field(default_factory=TestConversation)
    recent_messages: int = 0  # earlier messages from this contact, one per hour before `now`
    expect: TestExpect = Field(default_factory=TestExpect)


class TestsFile(Strict):
    test: list[TestCase] = Field(default_factory=list)
