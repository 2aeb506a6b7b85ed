"""Turning a decision and its trace into text (for admins) or JSON (for scripts and the API)."""

from __future__ import annotations

import json
from typing import Any

from hub.routing import RoutingDecision
from hub.routing.redact import jsonable


def decision_dict(d: RoutingDecision) -> dict[str, Any]:
    """A JSON-serialisable dict of the whole decision (datetimes as ISO strings)."""
    return dict(jsonable(d))


def to_json(d: RoutingDecision) -> str:
    return json.dumps(decision_dict(d), indent=2, ensure_ascii=False)


def _clauses(items: list[dict[str, Any]], depth: int) -> list[str]:
    out = []
    pad = "    " * depth
    for c in items:
        mark = "yes" if c["result"] else "no "
        if "group" in c:
            out.append(f"{pad}[{mark}] {c['group']}:")
            out += _clauses(c.get("clauses") or [], depth + 1)
        else:
            out.append(
                f"{pad}[{mark}] {c['clause']} {json.dumps(c['expected'], ensure_ascii=False)}"
                f"  <- {json.dumps(c['value'], ensure_ascii=False)}"
            )
    return out


def _entry(e: dict[str, Any]) -> list[str]:
    if "guard" in e:
        return [f"  ! {e['rule']}: auto-reply suppressed: {e['guard']}"]
    if "note" in e:
        extra = f" ({e['rules_skipped']} rules)" if "rules_skipped" in e else ""
        return [f"  - {e['phase']}: {e['note']}{extra}"]
    head = "MATCH" if e["matched"] else "no   "
    lines = [f"  {head} {e['phase']:<7} {e['rule']}  ({e['source']})"]
    lines += _clauses(e.get("clauses", []), 3)
    for k, v in (e.get("actions") or {}).items():
        lines.append(f"            -> {k}: {v}")
    for k, v in (e.get("overridden") or {}).items():
        lines.append(f"            x  {k} overridden {v}")
    return lines


def to_text(d: RoutingDecision) -> str:
    lines = [f"rules version: {d.rules_version}", "decision:"]
    fields = {
        "queue": d.queue,
        "priority": d.priority,
        "tags added": list(d.tags_add),
        "tags removed": list(d.tags_remove),
        "assign": d.assign,
        "status": d.status,
        "spam": d.spam,
        "stopped": d.stopped,
        "language": d.language,
    }
    lines += [f"  {k}: {v}" for k, v in fields.items() if v not in (None, [], False)]
    for r in d.auto_replies:
        lines.append(
            f"  auto-reply: {r.template} ({r.language}) once per {r.once_per_seconds // 60} min,"
            f" key {r.once_per_key}"
        )
        lines += [
            "      | " + line
            for line in ([f"Subject: {r.subject}"] if r.subject else []) + r.body.splitlines()
        ]
    for n in d.notifications:
        lines.append(f"  notify {n.kind} {n.target}: {n.text}")
    for t in d.timers:
        lines.append(
            f"  timer {t.rule_id}:{t.step} due {t.due_at.isoformat()}"
            f" -> {json.dumps(jsonable(t.actions))}"
        )
    lines.append("trace:")
    for e in d.trace:
        lines += _entry(e)
    return "\n".join(lines)
