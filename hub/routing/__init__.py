"""The routing interface the intake calls; the rule engine (this package) implements it.

`Router.decide` is synchronous and pure: the intake builds a `RoutingContext` inside its
transaction, asks for a `RoutingDecision`, and applies it (hub.routing.apply) before commit,
so a message, its routing and any auto-reply outbox rows are committed together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from hub.model import InboundMessage


@dataclass(frozen=True, slots=True)
class ConversationSnapshot:
    id: int
    is_new: bool
    channel: str
    status: str
    queue: str | None
    priority: str
    tags: frozenset[str]
    reference: str
    assignee: str | None = None  # staff email
    auto_replies_sent: int = 0
    # The conversation's language; a new one starts with the contact's stored language, so a
    # citizen known to write Spanish is routed as such when a message does not say (hub.intake).
    language: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingContext:
    message: InboundMessage
    conversation: ConversationSnapshot
    contact_id: int
    now: datetime
    recent_inbound: tuple[datetime, ...] = ()  # this contact's earlier inbound messages (history_days)
    sent_auto_replies: frozenset[str] = frozenset()  # once_per keys still inside their window


@dataclass(frozen=True, slots=True)
class AutoReply:
    rule_id: str
    template: str
    language: str
    subject: str | None
    body: str
    once_per_key: str  # e.g. "rule:<id>:contact:<n>"; intake records it with its window
    once_per_seconds: int
    variables: dict[str, Any] = field(default_factory=dict)  # what it was rendered with


@dataclass(frozen=True, slots=True)
class Notify:
    rule_id: str
    kind: str  # "email" | "webhook"
    target: str
    text: str


@dataclass(frozen=True, slots=True)
class TimerSpec:
    rule_id: str
    step: str
    due_at: datetime
    actions: dict[str, Any]


@dataclass(slots=True)
class RoutingDecision:
    rules_version: str
    queue: str | None = None
    priority: str | None = None
    tags_add: tuple[str, ...] = ()
    tags_remove: tuple[str, ...] = ()
    assign: str | None = None  # a staff email, or "@strategy" for the queue's strategy
    status: str | None = None
    spam: bool = False
    stopped: bool = False
    language: str | None = None
    auto_replies: tuple[AutoReply, ...] = ()
    notifications: tuple[Notify, ...] = ()
    timers: tuple[TimerSpec, ...] = ()
    trace: list[dict[str, Any]] = field(default_factory=list)


class Router(Protocol):
    @property
    def version(self) -> str: ...

    @property
    def history_days(self) -> int:
        """How far back `recent_inbound` must reach (0: the intake skips that query)."""
        ...

    @property
    def uses_once_per(self) -> bool:
        """Whether any rule can auto-reply (False: the intake skips the once_per query)."""
        ...

    @property
    def once_per_rules(self) -> frozenset[str]:
        """The ids of the rules that can auto-reply: their once_per keys are looked up exactly."""
        ...

    @property
    def default_queue_name(self) -> str:
        """Where a message goes when routing itself fails."""
        ...

    @property
    def language_codes(self) -> frozenset[str]:
        """The languages a message's language is detected among; none when no rule asks."""
        ...

    def decide(self, ctx: RoutingContext) -> RoutingDecision: ...


class DefaultQueueRouter:
    """Routes everything to one queue: used when no rule set is loaded."""

    def __init__(self, queue: str) -> None:
        self._queue = queue
        self.default_queue_name = queue

    @property
    def version(self) -> str:
        return "default"

    @property
    def history_days(self) -> int:
        return 0

    uses_once_per = False
    once_per_rules: frozenset[str] = frozenset()
    language_codes: frozenset[str] = frozenset()

    def decide(self, ctx: RoutingContext) -> RoutingDecision:
        if not ctx.conversation.is_new:
            queue, rule = None, "default"
        elif ctx.message.inbox_queue:  # the inbox it was sent to ([smtp] inboxes)
            queue, rule = ctx.message.inbox_queue, "inbox"
        else:
            queue, rule = self._queue, "default"
        return RoutingDecision(
            rules_version=self.version,
            queue=queue,
            trace=[{"rule": rule, "matched": True, "actions": {"queue": queue}}],
        )
