"""Rule tests in `<rules>/tests/*.toml`: a message in, the expected decision out.

Used by `hub rules test` and by the hot reloader (a rule set whose tests fail never goes live).
A failure is reported as `path:line: test "name": what differed`.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.model import InboundAttachment, InboundMessage
from hub.routing import ConversationSnapshot, RoutingContext, RoutingDecision
from hub.routing.engine import RuleSet
from hub.routing.errors import RuleError
from hub.routing.lines import LineFinder
from hub.routing.schema import TestCase, TestsFile

DEFAULT_NOW = "2025-03-04T10:00:00"  # a Tuesday morning, in the rule set's timezone


def context_for(case: TestCase, ruleset: RuleSet) -> RoutingContext:
    now = datetime.fromisoformat(case.now or DEFAULT_NOW)
    if now.tzinfo is None:
        now = now.replace(tzinfo=ruleset.env.zone(ruleset.settings.timezone))
    m, c = case.message, case.conversation
    message = InboundMessage(
        channel=m.channel,
        provider_id="rule-test",
        sender=m.sender,
        text=m.text,
        subject=m.subject,
        recipient=m.recipient,
        sender_name=m.sender_name,
        language=m.language,
        automatic=m.automatic,
        attachments=tuple(
            InboundAttachment(f"file{i}", ct, b"") for i, ct in enumerate(m.attachments)
        ),
        received_at=now,
        meta={"form": m.form} if m.form is not None else {},
    )
    conversation = ConversationSnapshot(
        id=1,
        is_new=c.is_new,
        channel=m.channel,
        status=c.status,
        queue=c.queue,
        priority=c.priority,
        tags=frozenset(c.tags),
        reference="TEST-0001",
        auto_replies_sent=c.auto_replies_sent,
    )
    recent = tuple(now - timedelta(hours=i + 1) for i in range(case.recent_messages))
    return RoutingContext(
        message=message, conversation=conversation, contact_id=1, now=now, recent_inbound=recent
    )


def fired(decision: RoutingDecision) -> set[str]:
    return {e["rule"] for e in decision.trace if e.get("matched")}


def compare(case: TestCase, d: RoutingDecision) -> list[str]:
    e = case.expect
    problems: list[str] = []

    def differ(what: str, want: Any, got: Any) -> None:
        problems.append(f"expected {what} {want!r}, got {got!r}")

    if e.queue is not None and (e.queue or None) != d.queue:
        differ("queue", e.queue or None, d.queue)
    final_priority = d.priority or case.conversation.priority
    if e.priority is not None and e.priority != final_priority:
        differ("priority", e.priority, final_priority)
    if e.tags is not None and not set(e.tags) <= set(d.tags_add):
        differ("tags to include", sorted(e.tags), sorted(d.tags_add))
    if e.no_tags is not None and set(e.no_tags) & set(d.tags_add):
        differ("tags not to include", sorted(e.no_tags), sorted(d.tags_add))
    if e.status is not None and e.status != d.status:
        differ("status", e.status, d.status)
    if e.spam is not None and e.spam != d.spam:
        differ("spam", e.spam, d.spam)
    if e.stopped is not None and e.stopped != d.stopped:
        differ("stopped", e.stopped, d.stopped)
    templates = [r.template for r in d.auto_replies]
    if e.auto_reply is False and templates:
        differ("no auto-reply", None, templates)
    elif isinstance(e.auto_reply, str) and e.auto_reply not in templates:
        differ("auto-reply", e.auto_reply, templates)
    got = fired(d)
    for rule in e.fired:
        if rule not in got:
            problems.append(f"expected rule {rule!r} to fire; fired: {sorted(got)}")
    for rule in e.not_fired:
        if rule in got:
            problems.append(f"expected rule {rule!r} not to fire")
    if e.timers is not None:
        timers = sorted(f"{t.rule_id}:{t.step}" for t in d.timers)
        if sorted(e.timers) != timers:
            differ("timers", sorted(e.timers), timers)
    return problems


def run_tests(ruleset: RuleSet, tests_dir: Path | None = None) -> tuple[int, list[RuleError]]:
    """(number of tests run, failures). Invalid test files are failures too."""
    root = Path(ruleset.root)
    tests_dir = tests_dir or root / "tests"
    count, failures = 0, []
    for path in sorted(tests_dir.glob("*.toml")) if tests_dir.is_dir() else []:
        display = (
            f"{root.as_posix().rstrip('/')}/{path.relative_to(root).as_posix()}"
            if path.is_relative_to(root)
            else str(path)
        )
        text = path.read_text(encoding="utf-8")
        finder = LineFinder(text)
        try:
            cases = TestsFile.model_validate(tomllib.loads(text)).test
        except tomllib.TOMLDecodeError as exc:
            failures.append(RuleError(display, 1, f"not valid TOML: {exc}"))
            continue
        except ValidationError as exc:
            for err in exc.errors():
                loc = list(err["loc"])
                index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
                line = finder.find(
                    finder.span("test", index), [p for p in loc[2:] if isinstance(p, str)]
                )
                failures.append(
                    RuleError(display, line, f"{'.'.join(map(str, loc))}: {err['msg']}")
                )
            continue
        for k, case in enumerate(cases):
            count += 1
            line = finder.span("test", k)[0]
            try:
                decision = ruleset.decide(context_for(case, ruleset))
            except ValueError as exc:
                failures.append(RuleError(display, line, f"test {case.name!r}: {exc}"))
                continue
            failures += [
                RuleError(display, line, f"test {case.name!r}: {p}")
                for p in compare(case, decision)
            ]
    return count, failures
