"""The compiled rule set and `decide`: phases, snapshots, conflict resolution, loop guards, trace.

Owns the semantics admins rely on:
- phases run in order intake -> route -> enrich -> timers; inside a phase every rule sees the same
  snapshot of the conversation, so a rule's change never re-triggers another rule of that phase;
  the next phase sees the result of the previous one;
- intake, enrich and timers fire every matching rule; route fires the first match by `order`
  (the default rule last) and only for a new conversation (a reply keeps its queue);
- conflicts inside a phase: the lowest `order` wins, except priority, where the highest wins;
  every loser is named in the trace;
- `stop` ends processing after the intake phase; `spam` also does and never queues;
- auto-replies: never to automatic mail, at most `max_auto_replies_per_message` per message and
  `max_auto_replies_per_conversation` per conversation, once per `once_per` window.
`decide` is pure: it reads the context and returns a decision, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

import jinja2

from hub.forms.schema import Form
from hub.model import PRIORITY_RANK
from hub.routing import (
    AutoReply,
    Notify,
    RoutingContext,
    RoutingDecision,
    TimerSpec,
)
from hub.routing.calendars import Calendar
from hub.routing.compile import Env, Facts, Gate, Group
from hub.routing.schema import PHASES, Actions, NotifySpec, QueueDecl, Settings, StepSpec
from hub.routing.templates import TemplateStore

_MIDNIGHT = time(0)


@dataclass(slots=True)
class Step:
    name: str
    minutes: int
    spec: StepSpec
    notify: list[tuple[str, str, jinja2.Template]]  # (kind, target, text template)


@dataclass(slots=True)
class Rule:
    id: str
    phase: str
    order: int
    default: bool
    source: str  # "path:line"
    when: Group
    then: Actions
    gate: Gate | None = None
    calendar: Calendar | None = None
    once_per_minutes: int = 0
    notify: list[tuple[str, str, jinja2.Template]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def catch_all(self) -> bool:
        return not self.when.children


class PhaseIndex:
    """Rules of one phase in evaluation order, indexed by their gates."""

    def __init__(self, rules: list[Rule]) -> None:
        # The default rule goes last whatever its order: it is the fallback.
        self.rules = sorted(rules, key=lambda r: (r.default, r.order, r.id))
        self.always: list[int] = []
        self.text: dict[str, dict[str, list[int]]] = {}
        self.channel: dict[str, list[int]] = {}
        self.sender: dict[str, list[int]] = {}
        self.domain: dict[str, list[int]] = {}
        for i, rule in enumerate(self.rules):
            self._index(i, rule.gate)

    def _index(self, i: int, gate: Gate | None) -> None:
        if gate is None:
            self.always.append(i)
            return
        if gate.kind == "text":
            table = self.text.setdefault(gate.field, {})
            for key in gate.keys:
                table.setdefault(key, []).append(i)
        elif gate.kind == "channel":
            for key in gate.keys:
                self.channel.setdefault(key, []).append(i)
        else:
            for key in gate.keys:
                self.sender.setdefault(key, []).append(i)
            for key in gate.domains:
                self.domain.setdefault(key, []).append(i)

    def candidates(self, f: Facts) -> list[int]:
        found = set(self.always)
        for name, table in self.text.items():
            for trig in f.triggers(name):
                hit = table.get(trig)
                if hit:
                    found.update(hit)
        found.update(self.channel.get(f.msg.channel, ()))
        if self.sender:
            found.update(self.sender.get((f.msg.sender or "").lower(), ()))
        if self.domain:
            found.update(self.domain.get((f.msg.sender or "").lower().rpartition("@")[2], ()))
        return sorted(found)


@dataclass(slots=True)
class _State:
    queue: str | None
    priority: str
    tags: set[str]
    status: str
    assign: str | None = None
    status_set: bool = False
    spam: bool = False
    stopped: bool = False
    routed: bool = False
    replies: list[tuple[Rule, dict[str, Any]]] = field(default_factory=list)
    notify: list[tuple[Rule, tuple[str, str, jinja2.Template]]] = field(default_factory=list)
    timers: list[Rule] = field(default_factory=list)


class _PhaseMerge:
    """Applies a phase's matched rules (lowest order first) and records conflicts."""

    def __init__(self, st: _State, entries: dict[str, dict[str, Any]]) -> None:
        self.st = st
        self.entries = entries
        self.owner: dict[str, Rule] = {}

    def _claim(self, what: str, rule: Rule, why: str = "lower order wins") -> bool:
        winner = self.owner.get(what)
        if winner is None:
            self.owner[what] = rule
            return True
        entry = self.entries[rule.id]
        entry.setdefault("overridden", {})[what] = f"by {winner.id} ({why})"
        self.entries[winner.id].setdefault("conflicts", []).append(
            {"action": what, "over": rule.id, "resolution": why}
        )
        return False

    def apply(self, rule: Rule) -> None:
        t, st = rule.then, self.st
        done = self.entries[rule.id].setdefault("actions", {})
        if t.queue and self._claim("queue", rule):
            st.queue, done["queue"] = t.queue, t.queue
        if t.priority:
            self._priority(rule, t.priority, done)
        for tag in t.tags.add if t.tags else ():
            if self._claim(f"tag:{tag}", rule):
                st.tags.add(tag)
                done.setdefault("tags_add", []).append(tag)
        for tag in t.tags.remove if t.tags else ():
            if self._claim(f"tag:{tag}", rule):
                st.tags.discard(tag)
                done.setdefault("tags_remove", []).append(tag)
        if t.status and self._claim("status", rule):
            st.status, st.status_set, done["status"] = t.status, True, t.status
        if t.assign and self._claim("assign", rule):
            st.assign, done["assign"] = t.assign, t.assign
        if t.spam:
            st.spam, st.stopped, done["spam"] = True, True, True
        if t.stop:
            st.stopped, done["stop"] = True, True
        if t.auto_reply:
            st.replies.append((rule, done))
        for n in rule.notify:
            st.notify.append((rule, n))
            done.setdefault("notify", []).append(f"{n[0]}:{n[1]}")
        if rule.steps:
            st.timers.append(rule)

    def _priority(self, rule: Rule, value: str, done: dict[str, Any]) -> None:
        winner = self.owner.get("priority")
        if winner is None or PRIORITY_RANK[value] > PRIORITY_RANK[self.st.priority]:
            if winner is not None:
                self._note_loser(winner, rule)
            self.owner["priority"] = rule
            self.st.priority, done["priority"] = value, value
        else:
            self._note_loser(rule, winner)

    def _note_loser(self, loser: Rule, winner: Rule) -> None:
        why = "highest priority wins"
        self.entries[loser.id].setdefault("overridden", {})["priority"] = f"by {winner.id} ({why})"
        self.entries[loser.id].get("actions", {}).pop("priority", None)
        self.entries[winner.id].setdefault("conflicts", []).append(
            {"action": "priority", "over": loser.id, "resolution": why}
        )


class RuleSet:
    """A validated, compiled rule folder. Implements hub.routing.Router."""

    def __init__(
        self,
        *,
        version: str,
        settings: Settings,
        queues: dict[str, QueueDecl],
        default_queue: str,
        rules: list[Rule],
        env: Env,
        templates: TemplateStore,
        calendars: dict[str, Calendar],
        root: str,
        forms: dict[str, Form] | None = None,
    ) -> None:
        self._version = version
        self.settings = settings
        self.queues = queues
        self.default_queue = default_queue
        self.rules = {r.id: r for r in rules}
        self.env = env
        self.templates = templates
        self.calendars = calendars
        self.root = root
        self.forms = forms or {}  # hub.forms: live and reloaded with the rules
        self.phases = {p: PhaseIndex([r for r in rules if r.phase == p]) for p in PHASES}
        self._once_per_rules = frozenset(r.id for r in rules if r.then.auto_reply)
        self._default_clock = Calendar(
            name="wall-clock",
            tz=env.zone(settings.timezone),
            hours={d: ((_MIDNIGHT, _MIDNIGHT),) for d in range(7)},
        )

    @property
    def version(self) -> str:
        return self._version

    @property
    def history_days(self) -> int:
        return self.env.history_days

    @property
    def uses_once_per(self) -> bool:
        return bool(self._once_per_rules)

    @property
    def once_per_rules(self) -> frozenset[str]:
        return self._once_per_rules

    @property
    def language_codes(self) -> frozenset[str]:
        # A message's language is asked for by a `language` condition or to pick an
        # auto-reply's template; a rule set with neither never needs it detected.
        asks = self.env.language_asked or bool(self._once_per_rules)
        return self.env.language_codes if asks else frozenset()

    @property
    def default_queue_name(self) -> str:
        return self.default_queue

    # ------------------------------------------------------------------ decide

    def decide(self, ctx: RoutingContext) -> RoutingDecision:
        f = Facts(ctx, self.env)
        conv = ctx.conversation
        st = _State(conv.queue, conv.priority, set(conv.tags), conv.status)
        trace: list[dict[str, Any]] = []
        for phase in PHASES:
            if phase == "route" and not (conv.is_new or conv.queue is None):
                trace.append(
                    {
                        "phase": "route",
                        "note": "reply to an existing conversation: it keeps its queue",
                    }
                )
                continue
            f.snap.queue, f.snap.priority = st.queue, st.priority
            f.snap.tags, f.snap.status = frozenset(st.tags), st.status
            self._run_phase(phase, f, st, trace)
            if st.stopped:
                trace.append(
                    {
                        "phase": phase,
                        "note": "processing stopped (spam)" if st.spam else "processing stopped",
                    }
                )
                break
        return self._finish(ctx, f, st, trace)

    def _run_phase(self, phase: str, f: Facts, st: _State, trace: list[dict[str, Any]]) -> None:
        index = self.phases[phase]
        if not index.rules:
            return
        cands = index.candidates(f)
        entries: dict[str, dict[str, Any]] = {}
        matched: list[Rule] = []
        for i in cands:
            rule = index.rules[i]
            clauses: list[dict[str, Any]] = []
            ok = all(c.eval(f, clauses) for c in rule.when.children)  # top level: an implicit all
            entry = {
                "rule": rule.id,
                "phase": phase,
                "source": rule.source,
                "matched": ok,
                "clauses": clauses,
            }
            if rule.default:
                entry["default"] = True
            trace.append(entry)
            entries[rule.id] = entry
            if ok:
                matched.append(rule)
                if phase == "route":
                    st.routed = True
                    break  # first match wins
        skipped = len(index.rules) - len(cands)
        if skipped:
            # Rules whose gate (a keyword, channel or sender they require) is absent.
            trace.append(
                {
                    "phase": phase,
                    "note": "not considered: a required keyword, channel or sender is absent",
                    "rules_skipped": skipped,
                }
            )
        merge = _PhaseMerge(st, entries)
        for rule in matched:
            merge.apply(rule)
        if phase == "route" and (not matched or matched[-1].default):
            self._inbox_default(f, st, trace)

    def _inbox_default(self, f: Facts, st: _State, trace: list[dict[str, Any]]) -> None:
        """Where no rule of its own routed it, mail to an inbox (`[smtp] inboxes`) goes to that
        inbox's queue rather than the default route: an input of the rules, in the trace."""
        inbox = f.msg.inbox_queue
        if not inbox or inbox not in self.queues:
            return
        st.queue, st.routed = inbox, True
        trace.append({"rule": "inbox", "phase": "route", "matched": True,
                      "note": "no route rule of its own: the inbox it was sent to decides",
                      "actions": {"queue": inbox}})

    # ------------------------------------------------------------------ finish

    def _finish(
        self, ctx: RoutingContext, f: Facts, st: _State, trace: list[dict[str, Any]]
    ) -> RoutingDecision:
        conv = ctx.conversation
        queue: str | None = None
        if not st.spam and (st.routed or st.queue != conv.queue):
            queue = st.queue
        variables = self._variables(ctx, f, queue or conv.queue)
        replies = () if st.spam else self._auto_replies(ctx, f, st, trace, variables)
        language = f.language() if (f.language_known or replies) else None
        timers = () if st.stopped else tuple(self._timers(ctx, st, queue or conv.queue, variables))
        return RoutingDecision(
            rules_version=self.version,
            queue=queue,
            priority=st.priority if st.priority != conv.priority else None,
            tags_add=tuple(sorted(st.tags - conv.tags)),
            tags_remove=tuple(sorted(conv.tags - st.tags)),
            assign=st.assign,
            status=st.status if st.status_set and st.status != conv.status else None,
            spam=st.spam,
            stopped=st.stopped,
            language=language,
            auto_replies=replies,
            notifications=tuple(self._notifications(st.notify, variables)),
            timers=timers,
            trace=trace,
        )

    def _variables(self, ctx: RoutingContext, f: Facts, queue: str | None) -> dict[str, Any]:
        msg = ctx.message
        return {
            "reference": ctx.conversation.reference,
            "subject": msg.subject,
            "sender_name": msg.sender_name,
            "channel": msg.channel,
            "queue": queue,
            "received_at": msg.received_at.isoformat(),
        }

    def _auto_replies(
        self,
        ctx: RoutingContext,
        f: Facts,
        st: _State,
        trace: list[dict[str, Any]],
        variables: dict[str, Any],
    ) -> tuple[AutoReply, ...]:
        out: list[AutoReply] = []
        already = ctx.conversation.auto_replies_sent
        for rule, done in st.replies:
            spec = rule.then.auto_reply
            assert spec is not None
            key = _once_key(rule.id, spec.scope, ctx)
            why = self._reply_guard(ctx, key, already + len(out), len(out))
            if why:
                done["auto_reply"] = f"suppressed: {why}"
                trace.append({"rule": rule.id, "guard": why})
                continue
            values = {**variables, "rule": rule.id, "language": f.language()}
            rendered = self.templates.render(spec.template, f.language(), values)
            out.append(
                AutoReply(
                    rule_id=rule.id,
                    template=spec.template,
                    language=rendered.language,
                    subject=rendered.subject,
                    body=rendered.body,
                    once_per_key=key,
                    once_per_seconds=rule.once_per_minutes * 60,
                    variables=values,
                )
            )
            done["auto_reply"] = f"{spec.template} ({rendered.language})"
        return tuple(out)

    def _reply_guard(
        self, ctx: RoutingContext, key: str, sent: int, this_message: int
    ) -> str | None:
        s = self.settings
        if ctx.message.automatic:
            return "automatic message (auto-reply, bulk or bounce): never answered automatically"
        if key in ctx.sent_auto_replies:
            return "already sent inside its once_per window"
        if this_message >= s.max_auto_replies_per_message:
            n = s.max_auto_replies_per_message
            return f"at most {n} auto-reply per message (lower phase/order wins)"
        if sent >= s.max_auto_replies_per_conversation:
            return f"cap of {s.max_auto_replies_per_conversation} auto-replies per conversation"
        return None

    def _notifications(
        self,
        items: Iterable[tuple[Rule, tuple[str, str, jinja2.Template]]],
        variables: dict[str, Any],
    ) -> Iterable[Notify]:
        for rule, (kind, target, tpl) in items:
            yield Notify(
                rule_id=rule.id, kind=kind, target=target, text=_render(tpl, variables, rule.id)
            )

    def _timers(
        self, ctx: RoutingContext, st: _State, queue: str | None, variables: dict[str, Any]
    ) -> Iterable[TimerSpec]:
        for rule in st.timers:
            clock = rule.calendar or self._queue_calendar(queue) or self._default_clock
            for step in rule.steps:
                due = clock.add_business_minutes(ctx.now, step.minutes)
                yield TimerSpec(
                    rule_id=rule.id,
                    step=step.name,
                    due_at=due,
                    actions=_step_actions(step, variables, rule.id),
                )

    def _queue_calendar(self, queue: str | None) -> Calendar | None:
        decl = self.queues.get(queue or "")
        return self.calendars.get(decl.calendar) if decl and decl.calendar else None

    # ------------------------------------------------------------------ helpers for callers

    def queue_declarations(self) -> list[QueueDecl]:
        """For hub.queues.sync_queues: name, title, strategy, capacity, calendar."""
        return list(self.queues.values())

    def render_template(self, name: str, language: str | None, variables: dict[str, Any]) -> Any:
        """For channels (e.g. the email acknowledgment): a `templates.Rendered`, or KeyError."""
        return self.templates.render(name, language, variables)


def _once_key(rule_id: str, scope: str, ctx: RoutingContext) -> str:
    if scope == "conversation":
        return f"rule:{rule_id}:conversation:{ctx.conversation.id}"
    return f"rule:{rule_id}:contact:{ctx.contact_id}"


def _render(tpl: jinja2.Template, variables: dict[str, Any], rule_id: str) -> str:
    values = {k: ("" if v is None else v) for k, v in variables.items()}
    values.setdefault("language", "")
    return tpl.render({**values, "rule": rule_id})


def _step_actions(step: Step, variables: dict[str, Any], rule_id: str) -> dict[str, Any]:
    s = step.spec
    actions: dict[str, Any] = {"after_minutes": step.minutes}
    if s.queue:
        actions["queue"] = s.queue
    if s.priority:
        actions["priority"] = s.priority
    if s.tags:
        actions["tags_add"], actions["tags_remove"] = list(s.tags.add), list(s.tags.remove)
    if step.notify:
        actions["notify"] = [
            {"kind": k, "target": t, "text": _render(tpl, variables, rule_id)}
            for k, t, tpl in step.notify
        ]
    return actions


def notify_targets(spec: NotifySpec | list[NotifySpec] | None) -> list[NotifySpec]:
    if spec is None:
        return []
    return spec if isinstance(spec, list) else [spec]


def once_per_delta(rule: Rule) -> timedelta:
    return timedelta(minutes=rule.once_per_minutes)
