"""Reads a rule folder, validates every file and compiles it into a `RuleSet`.

Layout of the folder (all optional except one default route rule when any rule file exists):
    settings.toml      timezone, languages, auto-reply caps
    queues.toml        [[queue]] declarations (the default queue always exists)
    *.toml             [[rule]] files, several rules per file
    lists/*.txt        named lists      calendars/*.toml  business calendars
    templates/<lang>/<name>.txt          tests/*.toml      rule tests (testing.py)
    forms/<form_id>.toml                 web forms and Open311 services (hub.forms)
Errors are collected, not raised one by one, and each is `path:line: message`.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_pkg
import jinja2
from jinja2 import meta
from pydantic import BaseModel, ValidationError

from hub.forms.loader import load_forms
from hub.routing.calendars import WEEKDAYS, Calendar, parse_interval
from hub.routing.compile import Env, choose_gate, compile_when
from hub.routing.engine import Rule, RuleSet, Step, notify_targets
from hub.routing.errors import RuleError, RuleSetInvalid
from hub.routing.language import supported
from hub.routing.lines import LineFinder, Span
from hub.routing.lists import NamedList, load_list
from hub.routing.schema import (
    CalendarFile,
    NotifySpec,
    QueueDecl,
    RuleModel,
    Settings,
    parse_minutes,
)
from hub.routing.templates import VARIABLES, _env, compile_text, load_templates
from hub.routing.textmatch import TriggerScanner

RESERVED = {"queues.toml", "settings.toml"}
HASHED_SKIP = {"tests"}  # rule tests do not change decisions, so not the version either
Reporter = Callable[[list[str | int], str, str | None], None]


def content_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if (
            rel.parts[0] in HASHED_SKIP
            or any(part.startswith(".") for part in rel.parts)
            or path.suffix == ".md"
        ):
            continue
        digest.update(str(rel.as_posix()).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def load_rules(root: Path | str, *, default_queue: str = "general") -> RuleSet:
    """Load, validate and compile; raises RuleSetInvalid with every error found."""
    loader = _Loader(Path(root), default_queue)
    ruleset = loader.build()
    if loader.errors or ruleset is None:
        raise RuleSetInvalid(loader.errors)
    return ruleset


def check_rules(root: Path | str, *, default_queue: str = "general") -> list[RuleError]:
    try:
        load_rules(root, default_queue=default_queue)
    except RuleSetInvalid as exc:
        return exc.errors
    return []


def _toml_line(exc: tomllib.TOMLDecodeError) -> int:
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else 1


def _pydantic_errors(
    exc: ValidationError, report: Reporter, prefix: list[str | int] | None = None
) -> None:
    for err in exc.errors():
        loc = [*(prefix or []), *err["loc"]]
        dotted = ".".join(str(p) for p in loc if isinstance(p, str))
        if err["type"] == "extra_forbidden":
            report(loc, f"unknown field {dotted!r}", None)
        elif err["type"] == "missing":
            report(loc[:-1], f"missing field {dotted!r}", None)
        else:
            msg = err["msg"].removeprefix("Value error, ")
            report(loc, f"{dotted}: {msg}" if dotted else msg, None)


class _Loader:
    def __init__(self, root: Path, default_queue: str) -> None:
        self.root = root
        self.default_queue = default_queue
        self.errors: list[RuleError] = []
        self.settings = Settings()
        self.queues: dict[str, QueueDecl] = {}
        self.calendars: dict[str, Calendar] = {}
        self.lists: dict[str, NamedList] = {}
        self.rules: list[Rule] = []
        self.first_rule_file: str | None = None
        self.unreadable = False  # a file that is not TOML: its rules are unknown

    def disp(self, path: Path) -> str:
        return f"{self.root.as_posix().rstrip('/')}/{path.relative_to(self.root).as_posix()}"

    def err(self, path: str, line: int, message: str) -> None:
        self.errors.append(RuleError(path, line, message))

    def reporter(self, display: str, finder: LineFinder, span: Span) -> Reporter:
        def report(path: list[str | int], message: str, needle: str | None) -> None:
            self.err(display, finder.find(span, path, needle), message)

        return report

    def read_toml(self, path: Path) -> tuple[dict[str, Any], LineFinder] | None:
        text = path.read_text(encoding="utf-8")
        try:
            return tomllib.loads(text), LineFinder(text)
        except tomllib.TOMLDecodeError as exc:
            self.err(self.disp(path), _toml_line(exc), f"not valid TOML: {exc}")
            self.unreadable = True
            return None

    def model(self, cls: type[BaseModel], data: Any, report: Reporter) -> Any:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            _pydantic_errors(exc, report)
            return None

    # ------------------------------------------------------------------ the files

    def build(self) -> RuleSet | None:
        if not self.root.is_dir():
            self.err(str(self.root), 0, "rule folder not found")
            return None
        self.load_settings()
        self.load_calendars()
        self.load_queues()
        self.load_lists()
        forms = load_forms(self)  # forms/*.toml: a bad form refuses the set like a bad rule
        templates, errs = load_templates(
            self.root / "templates",
            self.disp(self.root / "templates"),
            self.settings.default_language,
        )
        self.errors += errs
        self.templates = templates
        codes = {*self.settings.languages, self.settings.default_language}
        codes |= {
            lang
            for name in templates.names
            for lang in templates.languages(name)
            if supported(lang)
        }
        self.env = Env(
            lists=self.lists,
            calendars=self.calendars,
            queues=set(self.queues),
            timezone=self.settings.timezone,
            phone_region=self.settings.phone_region,
            language_codes=frozenset(codes),
            forms=forms,
        )
        for path in sorted(self.root.glob("*.toml")):
            if path.name not in RESERVED:
                self.load_rule_file(path)
        self.cross_checks()
        scanner = TriggerScanner(self.env.keywords)
        self.env.scan = scanner.scan
        return RuleSet(
            version=content_hash(self.root),
            settings=self.settings,
            queues=self.queues,
            default_queue=self._default_route_queue(),
            rules=self.rules,
            env=self.env,
            templates=templates,
            calendars=self.calendars,
            root=str(self.root),
            forms=forms,
        )

    def load_settings(self) -> None:
        path = self.root / "settings.toml"
        if not path.exists():
            return
        got = self.read_toml(path)
        if got is None:
            return
        data, finder = got
        report = self.reporter(self.disp(path), finder, finder.whole())
        settings = self.model(Settings, data, report)
        if settings is None:
            return
        self.settings = settings
        try:
            ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            report(["timezone"], f"unknown timezone {settings.timezone!r}", None)
            self.settings = settings.model_copy(update={"timezone": "UTC"})
        for lang in [*settings.languages, settings.default_language]:
            if not supported(lang):
                report(["languages"], f"unknown language code {lang!r}", lang)

    def load_calendars(self) -> None:
        for path in sorted((self.root / "calendars").glob("*.toml")):
            got = self.read_toml(path)
            if got is None:
                continue
            data, finder = got
            report = self.reporter(self.disp(path), finder, finder.whole())
            spec = self.model(CalendarFile, data, report)
            if spec is not None:
                cal = _calendar(path.stem, spec, report)
                if cal is not None:
                    self.calendars[path.stem] = cal

    def load_queues(self) -> None:
        path = self.root / "queues.toml"
        if path.exists() and (got := self.read_toml(path)) is not None:
            data, finder = got
            items = data.get("queue", []) if isinstance(data, dict) else []
            for extra in set(data) - {"queue"}:
                self.err(
                    self.disp(path),
                    finder.find(finder.whole(), [extra]),
                    f"unknown field {extra!r}",
                )
            for k, raw in enumerate(items):
                report = self.reporter(self.disp(path), finder, finder.span("queue", k))
                decl = self.model(QueueDecl, raw, report)
                if decl is None:
                    continue
                if decl.name in self.queues:
                    report(["name"], f"duplicate queue {decl.name!r}", None)
                if decl.calendar and decl.calendar not in self.calendars:
                    report(["calendar"], f"unknown calendar {decl.calendar!r}", None)
                self.queues[decl.name] = decl
        # The default queue exists even when nobody declared it.
        self.queues.setdefault(
            self.default_queue, QueueDecl(name=self.default_queue, title="General")
        )

    def load_lists(self) -> None:
        for path in sorted((self.root / "lists").glob("*.txt")):
            named, errs = load_list(path, self.disp(path), self.settings.phone_region)
            self.errors += errs
            self.lists[named.name] = named

    def load_rule_file(self, path: Path) -> None:
        got = self.read_toml(path)
        if got is None:
            return
        data, finder = got
        display = self.disp(path)
        for extra in set(data) - {"rule"}:
            self.err(
                display,
                finder.find(finder.whole(), [extra]),
                f"unknown top-level key {extra!r}; rule files hold [[rule]] tables",
            )
        items = data.get("rule", [])
        if not isinstance(items, list):
            self.err(display, 1, "`rule` must be an array of tables: write [[rule]]")
            return
        for k, raw in enumerate(items):
            rule = self.load_rule(raw, display, finder, finder.span("rule", k))
            if rule is not None:
                self.rules.append(rule)

    def load_rule(self, raw: Any, display: str, finder: LineFinder, span: Span) -> Rule | None:
        report = self.reporter(display, finder, span)
        model: RuleModel | None = self.model(RuleModel, raw, report)
        if model is None:
            return None
        when = compile_when(model.when, ["when"], self.env, report)
        rule = Rule(
            id=model.id,
            phase=model.phase,
            order=model.order if model.order is not None else 1_000_000,
            default=model.default,
            source=f"{display}:{finder.find(span, ['id'])}",
            when=when,
            then=model.then,
            gate=choose_gate(when),
        )
        self.rule_checks(model, rule, report)
        if not model.enabled:
            return None
        return rule

    # ------------------------------------------------------------------ checks

    def rule_checks(self, m: RuleModel, rule: Rule, report: Reporter) -> None:
        t = m.then
        if m.order is None and not m.default:
            report(["id"], f"rule {m.id!r} needs an `order` (rules run by order)", None)
        if m.default and m.phase != "route":
            report(["default"], "only a route rule can be the default", None)
        if m.default and m.when:
            report(
                ["when"],
                "the default rule must have no conditions (it catches everything else)",
                None,
            )
        if m.phase == "route" and not t.queue:
            report(["then"], "a route rule must set then.queue", None)
        if t.stop and m.phase != "intake":
            report(["then", "stop"], "`stop` is only allowed in the intake phase", None)
        if t.escalate is not None and m.phase != "timers":
            report(["then", "escalate"], "`escalate` is only allowed in the timers phase", None)
        if m.phase == "timers":
            others = [
                k for k, v in t.model_dump(exclude_defaults=True).items() if k != "escalate" and v
            ]
            if others or not t.escalate:
                report(["then"], "a timers rule takes only then.escalate (a list of steps)", None)
        if t.queue and t.queue not in self.queues:
            report(["then", "queue"], f"unknown queue {t.queue!r}; declare it in queues.toml", None)
        if m.calendar:
            rule.calendar = self.calendars.get(m.calendar)
            if rule.calendar is None:
                report(["calendar"], f"unknown calendar {m.calendar!r}", None)
        self.auto_reply_checks(m, rule, report)
        rule.notify = self.notify_specs(notify_targets(t.notify), ["then", "notify"], report)
        for i, step in enumerate(t.escalate or []):
            built = self.step(step, i, report)
            if built:
                rule.steps.append(built)

    def auto_reply_checks(self, m: RuleModel, rule: Rule, report: Reporter) -> None:
        spec = m.then.auto_reply
        if spec is None:
            return
        path: list[str | int] = ["then", "auto_reply"]
        if not self.templates.has(spec.template):
            lang = self.settings.default_language
            report(
                [*path, "template"],
                f"unknown template {spec.template!r}"
                f" (expected templates/{lang}/{spec.template}.txt)",
                None,
            )
        if spec.once_per is None:
            report(
                path,
                'an auto-reply needs `once_per` (e.g. "24h") so nobody is answered in a loop',
                None,
            )
            return
        try:
            rule.once_per_minutes = parse_minutes(spec.once_per)
        except ValueError as exc:
            report([*path, "once_per"], str(exc), None)

    def notify_specs(
        self, specs: list[NotifySpec], path: list[str | int], report: Reporter
    ) -> list[tuple[str, str, jinja2.Template]]:
        out = []
        for spec in specs:
            if (spec.email is None) == (spec.webhook is None):
                report(path, "notify needs exactly one of `email` or `webhook`", None)
                continue
            env = _env()
            try:
                unknown = meta.find_undeclared_variables(env.parse(spec.text)) - VARIABLES
                tpl = compile_text(env, spec.text)
            except jinja2.TemplateSyntaxError as exc:
                report([*path, "text"], f"notify text: {exc.message}", None)
                continue
            if unknown:
                report(
                    [*path, "text"],
                    f"unknown template variable(s) {', '.join(sorted(unknown))}",
                    None,
                )
                continue
            kind, target = ("email", spec.email) if spec.email else ("webhook", spec.webhook)
            out.append((kind, str(target), tpl))
        return out

    def step(self, spec: Any, i: int, report: Reporter) -> Step | None:
        path: list[str | int] = ["then", "escalate", i]
        try:
            minutes = parse_minutes(spec.after, allow_days=False)
        except ValueError as exc:
            report([*path, "after"], str(exc), None)
            return None
        if spec.queue and spec.queue not in self.queues:
            report(
                [*path, "queue"],
                f"unknown queue {spec.queue!r}; declare it in queues.toml",
                spec.queue,
            )
        notify = self.notify_specs(notify_targets(spec.notify), [*path, "notify"], report)
        return Step(name=spec.name or f"step{i + 1}", minutes=minutes, spec=spec, notify=notify)

    def cross_checks(self) -> None:
        seen: dict[str, Rule] = {}
        orders: dict[tuple[str, int], Rule] = {}
        for rule in self.rules:
            path, line = _split_source(rule.source)
            if rule.id in seen:
                self.err(
                    path, line, f"duplicate rule id {rule.id!r} (first at {seen[rule.id].source})"
                )
            seen.setdefault(rule.id, rule)
            if not rule.default:
                first = orders.get((rule.phase, rule.order))
                if first is not None:
                    self.err(
                        path,
                        line,
                        f"duplicate order {rule.order} in phase {rule.phase!r}"
                        f" (also {first.id!r} at {first.source}): the order must decide",
                    )
                orders.setdefault((rule.phase, rule.order), rule)
        self.default_checks()

    def default_checks(self) -> None:
        route = sorted(
            (r for r in self.rules if r.phase == "route"), key=lambda r: (r.default, r.order)
        )
        defaults = [r for r in route if r.default]
        # A file that is not TOML may hold the default rule: say only what is really wrong.
        if self.rules and not defaults and not self.unreadable:
            where = _split_source(self.rules[0].source)[0]
            self.err(
                where,
                1,
                "no default route rule: add a route rule with `default = true` and a queue",
            )
        for extra in defaults[1:]:
            path, line = _split_source(extra.source)
            self.err(
                path,
                line,
                f"a second default rule (the first is {defaults[0].id!r} at {defaults[0].source})",
            )
        catch = next((r for r in route if r.catch_all and not r.default), None)
        if catch is None:
            return
        for later in route[route.index(catch) + 1 :]:
            path, line = _split_source(later.source)
            self.err(
                path,
                line,
                f"rule {later.id!r} is never reached: {catch.id!r} ({catch.source})"
                " has no conditions and comes first",
            )

    def _default_route_queue(self) -> str:
        for rule in self.rules:
            if rule.default and rule.then.queue:
                return rule.then.queue
        return self.default_queue


def _split_source(source: str) -> tuple[str, int]:
    path, _, line = source.rpartition(":")
    return path, int(line)


def _calendar(name: str, spec: CalendarFile, report: Reporter) -> Calendar | None:
    ok = True
    try:
        tz = ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        report(["timezone"], f"unknown timezone {spec.timezone!r}", None)
        return None
    hours: dict[int, tuple[tuple[Any, Any], ...]] = {}
    for day, intervals in spec.hours.items():
        if day.lower() not in WEEKDAYS:
            report(["hours", day], f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}", None)
            ok = False
            continue
        try:
            hours[WEEKDAYS.index(day.lower())] = tuple(parse_interval(i) for i in intervals)
        except ValueError as exc:
            report(["hours", day], str(exc), None)
            ok = False
    closed = set()
    for text in spec.closed:
        try:
            closed.add(date.fromisoformat(text))
        except ValueError:
            report(["closed"], f"bad date {text!r}: use YYYY-MM-DD", text)
            ok = False
    if spec.country:
        try:
            holidays_pkg.country_holidays(spec.country, subdiv=spec.subdivision)
        except NotImplementedError as exc:
            report(["country"], f"no public holidays known for {spec.country!r}: {exc}", None)
            ok = False
    if not any(hours.values()):
        report(["hours"], "a calendar needs opening hours on at least one weekday", None)
        ok = False
    if not ok:
        return None
    return Calendar(
        name=name,
        tz=tz,
        hours=hours,
        closed=frozenset(closed),
        country=spec.country,
        subdivision=spec.subdivision,
    )
