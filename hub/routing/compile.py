"""Conditions (`when`) -> trees of Python callables, and the field vocabulary (`FIELDS`).

`FIELDS` is the one table of condition fields: per field its operators, its builder and what a
trace shows; "unknown field/operator" messages are generated from it. A new field is one
`register(FieldSpec(...))`; dotted names (`form.id`) and families (`form.*`) nest in rule files.

No text is ever evaluated: each `field.operator = value` becomes a `Clause` whose test is a
closure built here. Every clause also knows how to show the value it compared (shortened for
personal data) for the trace, its rough cost (cheap clauses run first inside `all`), and, when it
can, a *gate*: a cheap necessary condition (a text trigger, a channel, a sender) that the engine
indexes so that rules which cannot match are never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from hub.model import CHANNELS, PRIORITY_RANK
from hub.routing import redact
from hub.routing.calendars import WEEKDAYS, Calendar
from hub.routing.language import of_message, supported
from hub.routing.lists import NamedList, to_e164
from hub.routing.textmatch import MAX_TEXT, REGEX_FLAGS, norm, regex_triggers

if TYPE_CHECKING:
    from hub.forms.schema import Form
    from hub.routing import RoutingContext

Report = Callable[[list[str | int], str, str | None], None]  # (key path, message, needle)
TEXT_FIELDS = ("subject", "text", "content")
STATUSES = ("open", "pending", "resolved", "closed")


@dataclass(frozen=True, slots=True)
class Gate:
    kind: str  # "text" | "channel" | "sender"
    keys: frozenset[str]
    field: str = ""  # for text gates: subject | text | content
    domains: frozenset[str] = frozenset()  # for sender gates


@dataclass(slots=True)
class Snapshot:
    """Conversation state every rule of a phase sees (rules never see each other's changes)."""

    queue: str | None
    priority: str
    tags: frozenset[str]
    status: str


class Facts:
    """Per-message values, computed at most once and only when a clause asks for them."""

    def __init__(self, ctx: RoutingContext, env: Env) -> None:
        self.ctx = ctx
        self.msg = ctx.message
        self.env = env
        conv = ctx.conversation
        self.snap = Snapshot(conv.queue, conv.priority, conv.tags, conv.status)
        self._raw: dict[str, str] = {}
        self._trig: dict[str, frozenset[str]] = {}
        self._lang: tuple[str | None] | None = None
        self._local: dict[str, datetime] = {}
        self._recent: dict[int, int] = {}  # days -> count: a clause and its trace both ask

    def raw(self, name: str) -> str:
        if name not in self._raw:
            if name == "content":
                self._raw[name] = f"{self.raw('subject')}\n{self.raw('text')}"
            else:
                self._raw[name] = (self.msg.subject if name == "subject" else self.msg.text) or ""
        return self._raw[name]

    def triggers(self, name: str) -> frozenset[str]:
        if name not in self._trig:
            if name == "content":
                self._trig[name] = self.triggers("subject") | self.triggers("text")
            else:
                self._trig[name] = self.env.scan(norm(self.raw(name)[:MAX_TEXT]))
        return self._trig[name]

    @property
    def language_known(self) -> bool:
        return self._lang is not None

    def language(self) -> str | None:
        if self._lang is None:
            stated = self.msg.language or self.ctx.conversation.language
            given = (stated or "").lower()[:2] or None
            found = given or of_message(self.msg, self.env.language_codes)
            self._lang = (found,)
        return self._lang[0]

    def local(self, tz_name: str) -> datetime:
        if tz_name not in self._local:
            tz = self.env.zone(tz_name)
            self._local[tz_name] = self.ctx.now.astimezone(tz)
        return self._local[tz_name]

    def form(self) -> dict[str, Any]:
        """`meta["form"]` of a web form's message (hub.forms.submit); empty for the rest."""
        got = self.msg.meta.get("form")
        return got if isinstance(got, dict) else {}

    def form_field(self, name: str) -> Any:
        fields = self.form().get("fields")
        return fields.get(name) if isinstance(fields, dict) else None

    def recent(self, days: int) -> int:
        if days not in self._recent:
            since = self.ctx.now - timedelta(days=days)
            self._recent[days] = sum(1 for t in self.ctx.recent_inbound if t >= since)
        return self._recent[days]


@dataclass(slots=True)
class Env:
    """What conditions may refer to; filled by the loader before compiling rules."""

    lists: dict[str, NamedList]
    calendars: dict[str, Calendar]
    queues: set[str]
    timezone: str
    phone_region: str
    language_codes: frozenset[str]
    keywords: set[str] = field(default_factory=set)  # every trigger the scanner must know
    history_days: int = 0
    language_asked: bool = False  # a rule has a `language` condition
    scan: Callable[[str], frozenset[str]] = lambda _t: frozenset()
    forms: dict[str, Form] = field(default_factory=dict)  # for `form.id` and `form.<field>`
    _zones: dict[str, Any] = field(default_factory=dict)

    def zone(self, name: str) -> Any:
        if name not in self._zones:
            from zoneinfo import ZoneInfo

            self._zones[name] = ZoneInfo(name)
        return self._zones[name]


# --------------------------------------------------------------------------- condition trees


class Node:
    cost: int = 1

    def eval(self, f: Facts, out: list[dict[str, Any]] | None) -> bool:
        raise NotImplementedError


@dataclass(slots=True)
class Clause(Node):
    key: str  # "text.contains"
    expected: Any
    test: Callable[[Facts], bool]
    show: Callable[[Facts], Any]
    cost: int = 1
    gate: Gate | None = None
    shown: Any = field(init=False)  # `expected` for the trace, made JSON once

    def __post_init__(self) -> None:
        self.shown = redact.jsonable(self.expected)

    def eval(self, f: Facts, out: list[dict[str, Any]] | None) -> bool:
        result = self.test(f)
        if out is not None:
            out.append(
                {
                    "clause": self.key,
                    "expected": self.shown,
                    "value": redact.jsonable(self.show(f)),
                    "result": result,
                }
            )
        return result


@dataclass(slots=True)
class Group(Node):
    kind: str  # "all" | "any" | "not"
    children: list[Node]
    cost: int = 1

    def eval(self, f: Facts, out: list[dict[str, Any]] | None) -> bool:
        inner: list[dict[str, Any]] | None = [] if out is not None else None
        if self.kind == "not":
            result = not self.children[0].eval(f, inner)
        elif self.kind == "any":
            result = any(c.eval(f, inner) for c in self.children)
        else:
            result = all(c.eval(f, inner) for c in self.children)
        if out is not None:
            out.append({"group": self.kind, "result": result, "clauses": inner})
        return result


# --------------------------------------------------------------------------- field vocabulary

Built = tuple[Callable[[Facts], bool], int, Gate | None]  # test, cost, gate
Builder = Callable[[str, str, Any, Env], Built]  # (field as written, operator, value, env)
Show = Callable[[str], Callable[[Facts], Any]]  # field as written -> the value a trace shows
Compiler = Callable[[str, Any, list[str | int], Env, Report], Node | None]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One condition field: everything compiling, tracing and error messages need to know."""

    name: str  # as in `when.<name>`; dotted for nested fields, `prefix.*` for a family
    operators: tuple[str, ...]  # listed in that order by "unknown operator" errors
    build: Builder | None = None  # operator + value -> test, cost, gate (raises Bad)
    show: Show | None = None  # the compared value in traces, shortened for personal data
    shorthand: str | None = None  # operator of `when.<name> = value`; default: in (list) / equals
    compile: Compiler | None = None  # instead of build/show: a value that is one table of options

    def __post_init__(self) -> None:
        if self.compile is None and (self.build is None or self.show is None):
            raise TypeError(f"condition field {self.name!r} needs build and show, or compile")


FIELDS: dict[str, FieldSpec] = {}  # in the order "unknown condition field" errors list them


def register(*specs: FieldSpec) -> None:
    """Add (or replace) condition fields; the only step a new field needs."""
    for spec in specs:
        FIELDS[spec.name] = spec


def field_for(name: str) -> FieldSpec | None:
    """The entry for a field as written: its own, else its family's (`form.email` -> `form.*`)."""
    spec = FIELDS.get(name)
    if spec is None and "." in name:
        spec = FIELDS.get(name.rpartition(".")[0] + ".*")
    return spec


def _has_children(name: str) -> bool:
    return any(key.startswith(f"{name}.") for key in FIELDS)


class Bad(ValueError):
    """A clause that cannot compile; `needle` points the line finder at the bad value."""

    def __init__(self, message: str, needle: str | None = None) -> None:
        super().__init__(message)
        self.needle = needle


def _unknown_op(name: str, op: str) -> Bad:
    spec = field_for(name)
    ops = ", ".join(spec.operators) if spec else "?"
    return Bad(f"unknown operator {op!r} for {name!r}; use one of: {ops}")


def _value(read: Callable[[Facts], Any]) -> Show:
    """For fields whose trace value does not depend on how the field was written."""
    return lambda _name: read


def _strs(value: Any, what: str = "a string or a list of strings") -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise Bad(f"expected {what}")


def _one_str(value: Any) -> str:
    if not isinstance(value, str):
        raise Bad("expected a string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Bad("expected true or false")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Bad("expected a whole number >= 0")
    return value


def _set_ops(
    get: Callable[[Facts], Any], op: str, values: frozenset[Any]
) -> Callable[[Facts], bool]:
    if op in ("equals", "in"):
        return lambda f: get(f) in values
    return lambda f: get(f) not in values


def _known(values: list[str], allowed: Collection[str], what: str, hint: str) -> frozenset[str]:
    for v in values:
        if v not in allowed:
            raise Bad(f"unknown {what} {v!r}; {hint}", v)
    return frozenset(values)


def _build_channel(name: str, op: str, arg: Any, env: Env) -> Built:
    keys = _known(_strs(arg), CHANNELS, "channel", f"channels are {', '.join(CHANNELS)}")
    gate = Gate("channel", keys) if op in ("equals", "in") else None
    return _set_ops(lambda f: f.msg.channel, op, keys), 1, gate


def _norm_address(value: str, env: Env) -> str:
    if value.startswith("+"):
        return to_e164(value, env.phone_region) or value
    return value.lower()


def _address(get: Callable[[Facts], str], *, gated: bool = False) -> Builder:
    """Address operators on `get` (a lower-cased address).

    `gated`: only for the sender, the one address the engine's gate index looks up.
    """

    def build(name: str, op: str, arg: Any, env: Env) -> Built:
        if op in ("equals", "in", "not_in"):
            keys = frozenset(_norm_address(v, env) for v in _strs(arg))
            gate = Gate("sender", keys) if gated and op != "not_in" else None
            return _set_ops(get, op, keys), 2, gate
        if op in ("in_list", "not_in_list"):
            lst = _named_list(arg, env)
            if op == "not_in_list":
                return (lambda f: not lst.has_sender(get(f))), 2, None
            # A keyword entry can match a sender too, and the gate index holds no keywords.
            use_gate = gated and not lst.keywords
            gate = Gate("sender", lst.entries, domains=lst.domains) if use_gate else None
            return (lambda f: lst.has_sender(get(f))), 2, gate
        if op == "ends_with":
            suffixes = tuple(v.lower() for v in _strs(arg))
            return (lambda f: get(f).endswith(suffixes)), 2, None
        if op == "matches":
            rx = _regex(_one_str(arg))
            return (lambda f: rx.search(get(f)) is not None), 4, None
        raise _unknown_op(name, op)

    return build


def _named_list(arg: Any, env: Env) -> NamedList:
    lst = env.lists.get(_one_str(arg))
    if lst is None:
        raise Bad(f"unknown list {arg!r}; lists are {sorted(env.lists) or 'none'}", arg)
    return lst


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, REGEX_FLAGS)
    except re.error as exc:
        raise Bad(f"regex {pattern!r} does not compile: {exc}", pattern) from None


def _regex_test(name: str, pattern: str) -> tuple[Callable[[Facts], bool], frozenset[str] | None]:
    rx = _regex(pattern)
    trig = regex_triggers(pattern)
    if trig is None:
        return (lambda f: rx.search(f.raw(name)[:MAX_TEXT]) is not None), None

    def test(f: Facts) -> bool:
        # The scan already told us whether a literal this regex needs is present.
        return (
            not trig.isdisjoint(f.triggers(name)) and rx.search(f.raw(name)[:MAX_TEXT]) is not None
        )

    return test, trig


def _keywords(arg: Any, env: Env) -> list[str]:
    words = [norm(w) for w in _strs(arg)]
    for w in words:
        if not w.strip():
            raise Bad("empty keyword")
    env.keywords.update(words)
    return words


def _build_text(name: str, op: str, arg: Any, env: Env) -> Built:
    """`name` is subject, text or content: Facts reads and scans each of them."""
    if op in ("contains", "contains_any", "contains_all", "not_contains"):
        words = _keywords(arg, env)
        if op == "contains_all":
            return (
                (lambda f: all(w in f.triggers(name) for w in words)),
                3,
                Gate("text", frozenset({max(words, key=len)}), name),
            )
        keys = frozenset(words)
        if op == "not_contains":
            return (lambda f: keys.isdisjoint(f.triggers(name))), 3, None
        return (lambda f: not keys.isdisjoint(f.triggers(name))), 3, Gate("text", keys, name)
    if op == "contains_list":
        lst = _named_list(arg, env)
        keys = lst.keywords | lst.entries
        env.keywords.update(keys)
        return (lambda f: not keys.isdisjoint(f.triggers(name))), 3, Gate("text", keys, name)
    if op in ("matches", "matches_any", "not_matches"):
        return _build_regex_text(name, op, arg, env)
    raise _unknown_op(name, op)


def _build_regex_text(name: str, op: str, arg: Any, env: Env) -> Built:
    pats = _strs(arg) if op == "matches_any" else [_one_str(arg)]
    tests = [_regex_test(name, p) for p in pats]
    fns = [t for t, _ in tests]
    trigs = [tr for _, tr in tests]
    for tr in trigs:
        env.keywords.update(tr or ())
    if op == "not_matches":
        return (lambda f: not fns[0](f)), 5, None
    gate = None
    if all(trigs):
        gate = Gate("text", frozenset().union(*trigs), name)  # type: ignore[arg-type]
    if len(fns) == 1:
        return fns[0], 5, gate
    return (lambda f: any(fn(f) for fn in fns)), 5, gate


def _show_text(name: str) -> Callable[[Facts], Any]:
    return lambda f: redact.text(f.raw(name))


def _build_language(name: str, op: str, arg: Any, env: Env) -> Built:
    codes = [c.lower() for c in _strs(arg)]
    for c in codes:
        if len(c) != 2 or not supported(c):
            raise Bad(f'unknown language code {c!r} (use ISO 639-1, e.g. "es")', c)
    env.language_codes = env.language_codes | frozenset(codes)
    env.language_asked = True
    return _set_ops(lambda f: f.language(), op, frozenset(codes)), 50, None


def _build_calendar(name: str, op: str, arg: Any, env: Env) -> Built:
    cal = env.calendars.get(_one_str(arg))
    if cal is None:
        raise Bad(f"unknown calendar {arg!r}; calendars are {sorted(env.calendars) or 'none'}", arg)
    if op == "within":
        return (lambda f: cal.is_open(f.ctx.now)), 4, None
    if op == "outside":
        return (lambda f: not cal.is_open(f.ctx.now)), 4, None
    raise _unknown_op(name, op)


def _build_weekday(name: str, op: str, arg: Any, env: Env) -> Built:
    days = [d.lower()[:3] for d in _strs(arg)]
    for d in days:
        if d not in WEEKDAYS:
            raise Bad(f"unknown weekday {d!r}; use {', '.join(WEEKDAYS)}", d)
    nums = frozenset(WEEKDAYS.index(d) for d in days)
    tz = env.timezone
    return _set_ops(lambda f: f.local(tz).weekday(), op, nums), 2, None


def _build_time(name: str, op: str, arg: Any, env: Env) -> Built:
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
        raise Bad('expected ["HH:MM", "HH:MM"]')
    try:
        start, end = time.fromisoformat(arg[0]), time.fromisoformat(arg[1])
    except ValueError:
        raise Bad('expected ["HH:MM", "HH:MM"]') from None
    tz = env.timezone

    def inside(f: Facts) -> bool:
        t = f.local(tz).time()
        # A range such as ["18:00", "08:00"] wraps around midnight.
        return start <= t < end if start <= end else (t >= start or t < end)

    if op == "between":
        return inside, 2, None
    return (lambda f: not inside(f)), 2, None


def _build_new_conversation(name: str, op: str, arg: Any, env: Env) -> Built:
    want = _bool(arg)
    return (lambda f: f.ctx.conversation.is_new is want), 1, None


def _build_automatic(name: str, op: str, arg: Any, env: Env) -> Built:
    want = _bool(arg)
    return (lambda f: f.msg.automatic is want), 1, None


def _build_status(name: str, op: str, arg: Any, env: Env) -> Built:
    values = _known(_strs(arg), STATUSES, "status", f"statuses are {', '.join(STATUSES)}")
    return _set_ops(lambda f: f.snap.status, op, values), 1, None


def _build_queue(name: str, op: str, arg: Any, env: Env) -> Built:
    values = _known(_strs(arg), env.queues, "queue", "declare it in queues.toml")
    return _set_ops(lambda f: f.snap.queue, op, values), 1, None


def _build_inbox(name: str, op: str, arg: Any, env: Env) -> Built:
    """The queue of the address it was sent to (`[smtp] inboxes`), e.g. roads@ -> "roads"."""
    values = _known(_strs(arg), env.queues, "queue", "declare it in queues.toml")
    return _set_ops(lambda f: f.msg.inbox_queue, op, values), 1, None


def _build_priority(name: str, op: str, arg: Any, env: Env) -> Built:
    hint = f"priorities are {', '.join(PRIORITY_RANK)}"
    values = _known(_strs(arg), PRIORITY_RANK, "priority", hint)
    if op == "at_least":
        rank = PRIORITY_RANK[_one_str(arg)]
        return (lambda f: PRIORITY_RANK[f.snap.priority] >= rank), 1, None
    if op == "at_most":
        rank = PRIORITY_RANK[_one_str(arg)]
        return (lambda f: PRIORITY_RANK[f.snap.priority] <= rank), 1, None
    return _set_ops(lambda f: f.snap.priority, op, values), 1, None


def _build_tags(name: str, op: str, arg: Any, env: Env) -> Built:
    tags = frozenset(_strs(arg))
    if op in ("has", "has_any"):
        return (lambda f: not tags.isdisjoint(f.snap.tags)), 1, None
    if op == "has_all":
        return (lambda f: tags <= f.snap.tags), 1, None
    if op == "has_none":
        return (lambda f: tags.isdisjoint(f.snap.tags)), 1, None
    raise _unknown_op(name, op)


_CMP: dict[str, Callable[[int, int], bool]] = {
    "equals": lambda a, b: a == b,
    "gte": lambda a, b: a >= b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
}


def _build_attachment_count(name: str, op: str, arg: Any, env: Env) -> Built:
    n, cmp = _int(arg), _CMP[op]
    return (lambda f: cmp(len(f.msg.attachments), n)), 1, None


def _build_attachment_type(name: str, op: str, arg: Any, env: Env) -> Built:
    pats = [p.lower() for p in _strs(arg)]

    def any_match(f: Facts) -> bool:
        return any(fnmatchcase(a.content_type.lower(), p) for a in f.msg.attachments for p in pats)

    if op == "in":
        return any_match, 2, None
    return (lambda f: not any_match(f)), 2, None


def _build_form_id(name: str, op: str, arg: Any, env: Env) -> Built:
    values = _known(_strs(arg), env.forms, "form", "forms are the files in forms/")
    return _set_ops(lambda f: f.form().get("id"), op, values), 1, None


def _form_choices(fid: str, env: Env) -> set[str] | None:
    """The choices `fid` may take when every form that has it makes it a choice field."""
    found = [fld for form in env.forms.values() for fld in form.field if fld.id == fid]
    if not found:
        fields = sorted({fld.id for form in env.forms.values() for fld in form.field})
        raise Bad(f"no form has a field {fid!r}; form fields are {fields or 'none'}")
    if all(fld.choices for fld in found):
        return {c.value for fld in found for c in fld.choices}
    return None


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _build_form_field(name: str, op: str, arg: Any, env: Env) -> Built:
    """`form.<field>`: a multi-choice answer matches when any of its values does."""
    fid = name.removeprefix("form.")
    choices = _form_choices(fid, env)
    read = lambda f: _as_list(f.form_field(fid))  # noqa: E731
    if op == "present":
        want = _bool(arg)
        return (lambda f: bool(read(f)) is want), 1, None
    if op == "contains":
        words = [w.casefold() for w in _strs(arg)]
        return (lambda f: any(w in v.casefold() for v in read(f) for w in words)), 2, None
    values = frozenset(_strs(arg))
    if choices is not None:
        _known(list(values), choices, f"choice of {fid!r}", f"choices are {sorted(choices)}")
    if op == "not_in":
        return (lambda f: values.isdisjoint(read(f))), 1, None
    return (lambda f: not values.isdisjoint(read(f))), 1, None


def _show_form_field(name: str) -> Callable[[Facts], Any]:
    fid = name.removeprefix("form.")
    return lambda f: [redact.text(v) for v in _as_list(f.form_field(fid))]


_RECENT_OPTIONS = ("days", "at_least", "at_most")


def _compile_recent(
    name: str, spec: Any, path: list[str | int], env: Env, report: Report
) -> Node | None:
    """`{ days = 7, at_least = 3 }`: one test of several options, not one test per operator."""
    if not isinstance(spec, dict) or "days" not in spec:
        report(path, f"{name} needs {{ days = N, at_least = M }} (or at_most)", None)
        return None
    unknown = sorted(set(spec) - set(_RECENT_OPTIONS))
    if unknown:
        report([*path, unknown[0]], str(_unknown_op(name, unknown[0])), None)
        return None
    try:
        days = _int(spec["days"])
        low = _int(spec.get("at_least", 0))
        high = _int(spec["at_most"]) if "at_most" in spec else None
    except Bad as exc:
        report(path, str(exc), None)
        return None
    env.history_days = max(env.history_days, days)

    def test(f: Facts) -> bool:
        n = f.recent(days)
        return n >= low and (high is None or n <= high)

    return Clause(name, spec, test, lambda f: f.recent(days), 2, None)


_SET = ("equals", "in", "not_in")
_ADDR_OPS = (*_SET, "in_list", "not_in_list", "ends_with", "matches")
_TEXT_OPS = (
    "contains",
    "contains_any",
    "contains_all",
    "not_contains",
    "contains_list",
    "matches",
    "matches_any",
    "not_matches",
)

register(
    FieldSpec("channel", _SET, _build_channel, _value(lambda f: f.msg.channel)),
    FieldSpec(
        "sender",
        _ADDR_OPS,
        _address(lambda f: (f.msg.sender or "").lower(), gated=True),
        _value(lambda f: redact.identity(f.msg.sender)),
    ),
    FieldSpec(
        "recipient",
        _ADDR_OPS,
        _address(lambda f: (f.msg.recipient or "").lower()),
        _value(lambda f: redact.identity(f.msg.recipient)),
    ),
    *(FieldSpec(n, _TEXT_OPS, _build_text, _show_text, "contains") for n in TEXT_FIELDS),
    FieldSpec("language", _SET, _build_language, _value(lambda f: f.language())),
    FieldSpec(
        "calendar", ("within", "outside"), _build_calendar, _value(lambda f: f.ctx.now.isoformat())
    ),
    FieldSpec(
        "weekday",
        ("in", "not_in"),
        _build_weekday,
        _value(lambda f: WEEKDAYS[f.local(f.env.timezone).weekday()]),
        "in",
    ),
    FieldSpec(
        "time",
        ("between", "not_between"),
        _build_time,
        _value(lambda f: f.local(f.env.timezone).strftime("%H:%M")),
    ),
    FieldSpec(
        "new_conversation",
        ("equals",),
        _build_new_conversation,
        _value(lambda f: f.ctx.conversation.is_new),
    ),
    FieldSpec("automatic", ("equals",), _build_automatic, _value(lambda f: f.msg.automatic)),
    FieldSpec("status", _SET, _build_status, _value(lambda f: f.snap.status)),
    FieldSpec("queue", _SET, _build_queue, _value(lambda f: f.snap.queue)),
    FieldSpec("inbox", _SET, _build_inbox, _value(lambda f: f.msg.inbox_queue)),
    FieldSpec(
        "priority",
        (*_SET, "at_least", "at_most"),
        _build_priority,
        _value(lambda f: f.snap.priority),
    ),
    FieldSpec(
        "tags",
        ("has", "has_any", "has_all", "has_none"),
        _build_tags,
        _value(lambda f: sorted(f.snap.tags)),
    ),
    FieldSpec(
        "attachment_count",
        tuple(_CMP),
        _build_attachment_count,
        _value(lambda f: len(f.msg.attachments)),
    ),
    FieldSpec(
        "attachment_type",
        ("in", "not_in"),
        _build_attachment_type,
        _value(lambda f: [a.content_type for a in f.msg.attachments]),
        "in",
    ),
    FieldSpec("recent_messages", _RECENT_OPTIONS, compile=_compile_recent),
    FieldSpec("form.id", _SET, _build_form_id, _value(lambda f: f.form().get("id"))),
    FieldSpec("form.*", (*_SET, "contains", "present"), _build_form_field, _show_form_field),
)


# --------------------------------------------------------------------------- when -> tree

_GROUPS = ("all", "any", "not")


def compile_when(when: Any, path: list[str | int], env: Env, report: Report) -> Group:
    """A `when` table -> an `all` group (empty: matches everything)."""
    if not isinstance(when, dict):
        report(path, "expected a table of conditions", None)
        return Group("all", [])
    return _all_of(when, "", path, env, report)


def _all_of(
    items: dict[str, Any], prefix: str, path: list[str | int], env: Env, report: Report
) -> Group:
    """The conditions of one table (`prefix` names its parent for nested fields)."""
    children: list[Node] = []
    for key, spec in items.items():
        name = f"{prefix}{key}"
        node = _compile_item(name, spec, [*path, key], env, report)
        if isinstance(node, Group) and node.kind == "all" and name not in _GROUPS:
            children.extend(node.children)  # several operators on one field: flatten, keep gates
        elif node is not None:
            children.append(node)
    children.sort(key=lambda n: n.cost)  # cheap tests first: `all` stops at the first false
    return Group("all", children, cost=sum(c.cost for c in children) or 1)


def _compile_item(
    name: str, spec: Any, path: list[str | int], env: Env, report: Report
) -> Node | None:
    if name in ("any", "all"):
        if not isinstance(spec, list) or not spec:
            report(path, f"`{name}` takes a list of condition tables", None)
            return None
        kids: list[Node] = [compile_when(s, [*path, i], env, report) for i, s in enumerate(spec)]
        return Group(name, kids, cost=sum(k.cost for k in kids))
    if name == "not":
        inner = compile_when(spec, path, env, report)
        return Group("not", [inner], cost=inner.cost)
    field_spec = field_for(name)
    if field_spec is None:
        if isinstance(spec, dict) and _has_children(name):
            return _all_of(spec, f"{name}.", path, env, report)
        fields = ", ".join(FIELDS)
        report(path, f"unknown condition field {name!r}; fields are: {fields}, any, all, not", None)
        return None
    if field_spec.compile is not None:
        return field_spec.compile(name, spec, path, env, report)
    return _compile_ops(field_spec, name, spec, path, env, report)


def _compile_ops(
    fs: FieldSpec, name: str, spec: Any, path: list[str | int], env: Env, report: Report
) -> Node | None:
    """`when.<name>.<op> = value` (or the shorthand `when.<name> = value`) -> clauses."""
    assert fs.build is not None and fs.show is not None  # FieldSpec.__post_init__ checked it
    ops = spec if isinstance(spec, dict) else {_shorthand(fs, spec): spec}
    show = fs.show(name)
    nodes: list[Node] = []
    for op, arg in ops.items():
        try:
            if op not in fs.operators:
                raise _unknown_op(name, op)
            test, cost, gate = fs.build(name, op, arg, env)
        except Bad as exc:
            report([*path, op], str(exc), exc.needle)
            continue
        nodes.append(Clause(f"{name}.{op}", arg, test, show, cost, gate))
    if len(nodes) == 1:
        return nodes[0]
    return Group("all", nodes, cost=sum(n.cost for n in nodes)) if nodes else None


def _shorthand(fs: FieldSpec, value: Any) -> str:
    if fs.shorthand is not None:
        return fs.shorthand
    return "in" if isinstance(value, list) else "equals"


def choose_gate(tree: Group) -> Gate | None:
    """The most selective gate among the top-level clauses (all of them must hold)."""
    gates = [c.gate for c in tree.children if isinstance(c, Clause) and c.gate is not None]
    rank = {"text": 0, "sender": 1, "channel": 2}
    if not gates:
        return None
    return min(gates, key=lambda g: (rank[g.kind], len(g.keys) + len(g.domains)))
