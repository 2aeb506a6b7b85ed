"""The "why is this here?" panel: a routing decision's trace (hub.routing's JSON) as rows a
template can show: each rule considered, whether it matched, each clause with the value it saw,
and the notes the engine left."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ClauseRow:
    depth: int
    text: str  # "text.contains" or a group's kind
    expected: str
    value: str
    result: bool


@dataclass(frozen=True, slots=True)
class TraceRow:
    phase: str
    rule: str | None
    source: str | None
    matched: bool | None
    note: str | None
    clauses: list[ClauseRow] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _clauses(items: list[Any], depth: int) -> list[ClauseRow]:
    rows: list[ClauseRow] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "group" in item:
            rows.append(ClauseRow(depth, str(item["group"]), "", "", bool(item.get("result"))))
            rows += _clauses(list(item.get("clauses") or []), depth + 1)
        else:
            rows.append(ClauseRow(depth, str(item.get("clause", "")),
                                  _shown(item.get("expected")), _shown(item.get("value")),
                                  bool(item.get("result"))))
    return rows


def trace_rows(trace: list[Any]) -> list[TraceRow]:
    rows = []
    for entry in trace:
        if not isinstance(entry, dict):
            continue
        note = entry.get("note") or entry.get("guard")
        actions = [f"{k}: {_shown(v)}" for k, v in (entry.get("actions") or {}).items()]
        rows.append(TraceRow(
            phase=str(entry.get("phase", "")), rule=entry.get("rule"), source=entry.get("source"),
            matched=entry.get("matched") if "matched" in entry else None,
            note=str(note) if note else None,
            clauses=_clauses(list(entry.get("clauses") or []), 0), actions=actions))
    return rows
