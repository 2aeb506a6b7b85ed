"""Conditions (`when`) -> trees of Python callables, with the field/operator vocabulary.

No text is ever evaluated: each `field.operator = value` becomes a `Clause` whose test is a
closure built here. Every clause also knows how to show the value it compared (shortened for
personal data) for the trace, its rough cost (cheap clauses run first inside `all`), and, when it
can, a *gate*: a cheap necessary condition (a text trigger, a channel, a sender) that the engine
indexes so that rules which cannot match are never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from hub.model import CHANNELS, PRIORITY_RANK
from hub.routing import redact
from hub.routing.calendars import WEEKDAYS, Calendar
from hub.routing.language import detect, supported
from hub.routing.lists import NamedList, to_e164
from hub.routing.textmatch import MAX_TEXT, REGEX_FLAGS, norm, regex_triggers

if TYPE_CHECKING:
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
            given = (self.msg.language or "").lower()[:2] or None
            found = given or detect(
                f"{self.msg.subject or ''}\n{self.msg.text}", self.env.language_codes
            )
            self._lang = (found,)
        return self._lang[0]

    def local(self, tz_name: str) -> datetime:
        if tz_name not in self._local:
            tz = self.env.zone(tz_name)
            self._local[tz_name] = self.ctx.now.astimezone(tz)
        return self._local[tz_name]

    def recent(self, days: int) -> int:
        since = self.ctx.now - timedelta(days=days)
        return sum(1 for t in self.ctx.recent_inbound if t >= since)


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
    scan: Callable[[str], frozenset[str]] = lambda _t: frozenset()
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

    def eval(self, f: Facts, out: list[dict[str, Any]] | None) -> bool:
        result = self.test(f)
        if out is not None:
            out.append(
                {
                    "clause": self.key,
                    "expected": redact.jsonable(self.expected),
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


class Bad(ValueError):
    """A clause that cannot compile; `needle` points the line finder at the bad value."""

    def __init__(self, message: str, needle: str | None = None) -> None:
        super().__init__(message)
        self.needle = needle


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
    get: Callable[[Facts], Any], op: str, values: frozenset[str]
) -> Callable[[Facts], bool]:
    if op in ("equals", "in"):
        return lambda f: get(f) in values
    return lambda f: get(f) not in values


def _build_channel(op: str, arg: Any, env: Env) -> Built:
    values = _strs(arg)
    for v in values:
        if v not in CHANNELS:
            raise Bad(f"unknown channel {v!r}; channels are {', '.join(CHANNELS)}", v)
    keys = frozenset(values)
    gate = Gate("channel", keys) if op in ("equals", "in") else None
    return _set_ops(lambda f: f.msg.channel, op, keys), 1, gate


def _norm_address(value: str, env: Env) -> str:
    if value.startswith("+"):
        return to_e164(value, env.phone_region) or value
    return value.lower()


def _address_getter(name: str) -> Callable[[Facts], str]:
    if name == "sender":
        return lambda f: (f.msg.sender or "").lower()
    return lambda f: (f.msg.recipient or "").lower()


def _build_address(name: str, op: str, arg: Any, env: Env) -> Built:
    get = _address_getter(name)
    if op in ("equals", "in", "not_in"):
        keys = frozenset(_norm_address(v, env) for v in _strs(arg))
        gate = Gate("sender", keys) if name == "sender" and op != "not_in" else None
        return _set_ops(get, op, keys), 2, gate
    if op in ("in_list", "not_in_list"):
        lst = env.lists.get(_one_str(arg))
        if lst is None:
            raise Bad(f"unknown list {arg!r}; lists are {sorted(env.lists) or 'none'}", arg)
        if op == "in_list":
            gate = None
            if name == "sender" and not lst.keywords:
                gate = Gate("sender", lst.entries, domains=lst.domains)
            return (lambda f: lst.has_sender(get(f))), 2, gate
        return (lambda f: not lst.has_sender(get(f))), 2, None
    if op == "ends_with":
        suffixes = tuple(v.lower() for v in _strs(arg))
        return (lambda f: get(f).endswith(suffixes)), 2, None
    if op == "matches":
        rx = _regex(_one_str(arg))
        return (lambda f: rx.search(get(f)) is not None), 4, None
    raise _unknown_op(name, op)


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
        lst = env.lists.get(_one_str(arg))
        if lst is None:
            raise Bad(f"unknown list {arg!r}; lists are {sorted(env.lists) or 'none'}", arg)
        keys = lst.keywords | lst.entries
        env.keywords.update(keys)
        return (lambda f: not keys.isdisjoint(f.triggers(name))), 3, Gate("text", keys, name)
    if op in ("matches", "matches_any", "not_matches"):
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
    raise _unknown_op(name, op)


def _build_language(op: str, arg: Any, env: Env) -> Built:
    codes = [c.lower() for c in _strs(arg)]
    for c in codes:
        if len(c) != 2 or not supported(c):
            raise Bad(f'unknown language code {c!r} (use ISO 639-1, e.g. "es")', c)
    env.language_codes = env.language_codes | frozenset(codes)
    return _set_ops(lambda f: f.language(), op, frozenset(codes)), 50, None


def _build_calendar(op: str, arg: Any, env: Env) -> Built:
    cal = env.calendars.get(_one_str(arg))
    if cal is None:
        raise Bad(f"unknown calendar {arg!r}; calendars are {sorted(env.calendars) or 'none'}", arg)
    if op == "within":
        return (lambda f: cal.is_open(f.ctx.now)), 4, None
    if op == "outside":
        return (lambda f: not cal.is_open(f.ctx.now)), 4, None
    raise _unknown_op("calendar", op)


def _build_weekday(op: str, arg: Any, env: Env) -> Built:
    days = [d.lower()[:3] for d in _strs(arg)]
    for d in days:
        if d not in WEEKDAYS:
            raise Bad(f"unknown weekday {d!r}; use {', '.join(WEEKDAYS)}", d)
    nums = frozenset(WEEKDAYS.index(d) for d in days)
    tz = env.timezone
    return _set_ops(lambda f: f.local(tz).weekday(), op, nums), 2, None  # type: ignore[arg-type]


def _build_time(op: str, arg: Any, env: Env) -> Built:
    if op not in ("between", "not_between"):
        raise _unknown_op("time", op)
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


def _build_flag(name: str, op: str, arg: Any, env: Env) -> Built:
    if op != "equals":
        raise _unknown_op(name, op)
    want = _bool(arg)
    if name == "new_conversation":
        return (lambda f: f.ctx.conversation.is_new is want), 1, None
    return (lambda f: f.msg.automatic is want), 1, None


def _build_state(name: str, op: str, arg: Any, env: Env) -> Built:
    values = _strs(arg)
    if name == "status":
        for v in values:
            if v not in STATUSES:
                raise Bad(f"unknown status {v!r}; statuses are {', '.join(STATUSES)}", v)
    elif name == "queue":
        for v in values:
            if v not in env.queues:
                raise Bad(f"unknown queue {v!r}; declare it in queues.toml", v)
    elif name == "priority":
        for v in values:
            if v not in PRIORITY_RANK:
                raise Bad(f"unknown priority {v!r}; priorities are {', '.join(PRIORITY_RANK)}", v)
        if op in ("at_least", "at_most"):
            rank = PRIORITY_RANK[_one_str(arg)]
            if op == "at_least":
                return (lambda f: PRIORITY_RANK[f.snap.priority] >= rank), 1, None
            return (lambda f: PRIORITY_RANK[f.snap.priority] <= rank), 1, None
    if op not in ("equals", "in", "not_in"):
        raise _unknown_op(name, op)
    return _set_ops(lambda f: getattr(f.snap, name), op, frozenset(values)), 1, None


def _build_tags(op: str, arg: Any, env: Env) -> Built:
    tags = frozenset(_strs(arg))
    if op in ("has", "has_any"):
        return (lambda f: not tags.isdisjoint(f.snap.tags)), 1, None
    if op == "has_all":
        return (lambda f: tags <= f.snap.tags), 1, None
    if op == "has_none":
        return (lambda f: tags.isdisjoint(f.snap.tags)), 1, None
    raise _unknown_op("tags", op)


_CMP: dict[str, Callable[[int, int], bool]] = {
    "equals": lambda a, b: a == b,
    "gte": lambda a, b: a >= b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "lt": lambda a, b: a < b,
}


def _build_attachments(name: str, op: str, arg: Any, env: Env) -> Built:
    if name == "attachment_count":
        if op not in _CMP:
            raise _unknown_op(name, op)
        n, cmp = _int(arg), _CMP[op]
        return (lambda f: cmp(len(f.msg.attachments), n)), 1, None
    pats = [p.lower() for p in _strs(arg)]

    def any_match(f: Facts) -> bool:
        return any(fnmatchcase(a.content_type.lower(), p) for a in f.msg.attachments for p in pats)

    if op == "in":
        return any_match, 2, None
    if op == "not_in":
        return (lambda f: not any_match(f)), 2, None
    raise _unknown_op(name, op)


def _unknown_op(name: str, op: str) -> Bad:
    ops = ", ".join(OPERATORS[name]) if name in OPERATORS else "?"
    return Bad(f"unknown operator {op!r} for {name!r}; use one of: {ops}")


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
_ADDR_OPS = ("equals", "in", "not_in", "in_list", "not_in_list", "ends_with", "matches")
OPERATORS: dict[str, tuple[str, ...]] = {
    "channel": ("equals", "in", "not_in"),
    "sender": _ADDR_OPS,
    "recipient": _ADDR_OPS,
    "subject": _TEXT_OPS,
    "text": _TEXT_OPS,
    "content": _TEXT_OPS,
    "language": ("equals", "in", "not_in"),
    "calendar": ("within", "outside"),
    "weekday": ("in", "not_in"),
    "time": ("between", "not_between"),
    "new_conversation": ("equals",),
    "automatic": ("equals",),
    "status": ("equals", "in", "not_in"),
    "queue": ("equals", "in", "not_in"),
    "priority": ("equals", "in", "not_in", "at_least", "at_most"),
    "tags": ("has", "has_any", "has_all", "has_none"),
    "attachment_count": ("equals", "gte", "lte", "gt", "lt"),
    "attachment_type": ("in", "not_in"),
    "recent_messages": ("days", "at_least", "at_most"),
}
SHORTHAND = {name: "contains" for name in TEXT_FIELDS} | {"weekday": "in", "attachment_type": "in"}


def _build(name: str, op: str, arg: Any, env: Env) -> Built:
    if op not in OPERATORS[name]:
        raise _unknown_op(name, op)
    if name == "channel":
        return _build_channel(op, arg, env)
    if name in ("sender", "recipient"):
        return _build_address(name, op, arg, env)
    if name in TEXT_FIELDS:
        return _build_text(name, op, arg, env)
    if name == "language":
        return _build_language(op, arg, env)
    if name == "calendar":
        return _build_calendar(op, arg, env)
    if name == "weekday":
        return _build_weekday(op, arg, env)
    if name == "time":
        return _build_time(op, arg, env)
    if name in ("new_conversation", "automatic"):
        return _build_flag(name, op, arg, env)
    if name in ("status", "queue", "priority"):
        return _build_state(name, op, arg, env)
    if name == "tags":
        return _build_tags(op, arg, env)
    return _build_attachments(name, op, arg, env)


def _show(name: str) -> Callable[[Facts], Any]:
    """The compared value for the trace, shortened when it is personal data."""
    if name in TEXT_FIELDS:
        return lambda f: redact.text(f.raw(name))
    if name in ("sender", "recipient"):
        return lambda f: redact.identity(getattr(f.msg, name))
    simple: dict[str, Callable[[Facts], Any]] = {
        "channel": lambda f: f.msg.channel,
        "language": lambda f: f.language(),
        "calendar": lambda f: f.ctx.now.isoformat(),
        "weekday": lambda f: WEEKDAYS[f.local(f.env.timezone).weekday()],
        "time": lambda f: f.local(f.env.timezone).strftime("%H:%M"),
        "new_conversation": lambda f: f.ctx.conversation.is_new,
        "automatic": lambda f: f.msg.automatic,
        "status": lambda f: f.snap.status,
        "queue": lambda f: f.snap.queue,
        "priority": lambda f: f.snap.priority,
        "tags": lambda f: sorted(f.snap.tags),
        "attachment_count": lambda f: len(f.msg.attachments),
        "attachment_type": lambda f: [a.content_type for a in f.msg.attachments],
    }
    return simple[name]


# --------------------------------------------------------------------------- when -> tree


def compile_when(when: Any, path: list[str | int], env: Env, report: Report) -> Group:
    """A `when` table -> an `all` group (empty: matches everything)."""
    children: list[Node] = []
    if not isinstance(when, dict):
        report(path, "expected a table of conditions", None)
        return Group("all", [])
    for name, spec in when.items():
        node = _compile_item(name, spec, [*path, name], env, report)
        if isinstance(node, Group) and node.kind == "all" and name not in ("all", "any", "not"):
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
    if name not in OPERATORS:
        report(
            path,
            f"unknown condition field {name!r}; fields are: {', '.join(OPERATORS)}, any, all, not",
            None,
        )
        return None
    if name == "recent_messages":
        return _compile_recent(spec, path, env, report)
    ops = spec if isinstance(spec, dict) else {_shorthand(name, spec): spec}
    nodes: list[Node] = []
    for op, arg in ops.items():
        try:
            test, cost, gate = _build(name, op, arg, env)
        except Bad as exc:
            report([*path, op], str(exc), exc.needle)
            continue
        nodes.append(Clause(f"{name}.{op}", arg, test, _show(name), cost, gate))
    if len(nodes) == 1:
        return nodes[0]
    return Group("all", nodes, cost=sum(n.cost for n in nodes)) if nodes else None


def _shorthand(name: str, value: Any) -> str:
    if name in SHORTHAND:
        return SHORTHAND[name]
    return "in" if isinstance(value, list) else "equals"


def _compile_recent(spec: Any, path: list[str | int], env: Env, report: Report) -> Node | None:
    if not isinstance(spec, dict) or "days" not in spec:
        report(path, "recent_messages needs { days = N, at_least = M } (or at_most)", None)
        return None
    unknown = set(spec) - set(OPERATORS["recent_messages"])
    if unknown:
        report(
            [*path, sorted(unknown)[0]],
            _unknown_op("recent_messages", sorted(unknown)[0]).args[0],
            None,
        )
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

    return Clause("recent_messages", spec, test, lambda f: f.recent(days), 2, None)


def choose_gate(tree: Group) -> Gate | None:
    """The most selective gate among the top-level clauses (all of them must hold)."""
    gates = [c.gate for c in tree.children if isinstance(c, Clause) and c.gate is not None]
    rank = {"text": 0, "sender": 1, "channel": 2}
    if not gates:
        return None
    return min(gates, key=lambda g: (rank[g.kind], len(g.keys) + len(g.domains)))
