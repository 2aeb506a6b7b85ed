"""Applying a routing decision to the stored conversation, inside the intake's transaction.

Sets queue/priority/tags/status/spam/assignee/language, stores the decision with its rules
version and trace, writes auto-replies as outbound messages + outbox rows (and their once_per
log rows), creates SLA timers (one pending row per conversation, rule and step: a citizen's
second message does not restart a running clock), and records notifications: an audit entry
(`action="rules.notify"`) each, and for email ones an internal email through the outbox and a
`staff.notify` event (hub.staff_notify; the events wait in `session.info[PENDING_EVENTS]` for
the caller to publish after commit). Returns the new outbox ids, which the caller enqueues
after commit.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.assignment import assign_by_strategy
from hub.model import StoredMessage, utcnow
from hub.outbound import NoAddressOnChannel, enqueue_outbound
from hub.routing import AutoReply, RoutingDecision
from hub.routing.explain import decision_dict
from hub.staff_notify import PENDING_EVENTS, notify_staff
from hub.storage.rows import add_row
from hub.storage.tables import (
    AutoReplyLog,
    Conversation,
    ConversationTimer,
    RoutingDecisionRow,
    Staff,
)


def _set_fields(conversation: Conversation, decision: RoutingDecision) -> dict[str, Any]:
    """Apply the scalar changes; return what changed (for the audit log)."""
    changed: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None and getattr(conversation, name) != value:
            changed[name] = value
            setattr(conversation, name, value)

    put("queue", decision.queue)
    put("priority", decision.priority)
    put("status", decision.status)
    if decision.tags_add or decision.tags_remove:
        tags = [t for t in (conversation.tags or []) if t not in decision.tags_remove]
        tags += [t for t in decision.tags_add if t not in tags]
        put("tags", tags)
    if decision.spam:
        put("spam", True)
    if decision.language and not conversation.language:
        conversation.language = decision.language
    return changed


async def _assign(session: AsyncSession, conversation: Conversation, who: str | None) -> str | None:
    """A staff email becomes the assignee; "@strategy" asks the queue's strategy, for a
    conversation nobody holds yet."""
    if not who:
        return None
    if who == "@strategy":
        if conversation.assignee_id is not None:
            return None
        chosen = await assign_by_strategy(session, conversation)
        return f"@strategy: {chosen or 'nobody free'}"
    staff_id = await session.scalar(
        select(Staff.id).where(Staff.email == who.lower(), Staff.active.is_(True))
    )
    if staff_id is None:
        return f"unknown or inactive staff {who}: not assigned"
    conversation.assignee_id = staff_id
    return who


async def pending_timers(session: AsyncSession,
                         conversation_ids: list[int]) -> dict[int, set[tuple[str, str]]]:
    """(rule id, step) of the timers still pending, per conversation."""
    pending: dict[int, set[tuple[str, str]]] = {i: set() for i in conversation_ids}
    if conversation_ids:
        rows = await session.execute(
            select(ConversationTimer.conversation_id, ConversationTimer.rule_id,
                   ConversationTimer.step).where(
                ConversationTimer.conversation_id.in_(conversation_ids),
                ConversationTimer.state == "pending"))
        for conversation_id, rule_id, step in rows:
            pending[conversation_id].add((rule_id, step))
    return pending


async def _timers(
    session: AsyncSession, conversation: Conversation, decision: RoutingDecision,
    pending: set[tuple[str, str]] | None,
) -> int:
    if not decision.timers:
        return 0
    if pending is None:
        pending = (await pending_timers(session, [conversation.id]))[conversation.id]
    created = 0
    for timer in decision.timers:
        if (timer.rule_id, timer.step) in pending:
            continue  # the clock started with an earlier unanswered message
        pending.add((timer.rule_id, timer.step))
        add_row(session, ConversationTimer, conversation_id=conversation.id,
                rule_id=timer.rule_id, step=timer.step, due_at=timer.due_at,
                actions=timer.actions, state="pending", created_at=utcnow(), fired_at=None)
        created += 1
    return created


async def _auto_replies(
    session: AsyncSession,
    conversation: Conversation,
    message: StoredMessage,
    decision: RoutingDecision,
    now: datetime,
    fold_into: list[AutoReply] | None,
    recipient: str | None,
) -> list[int]:
    outbox_ids: list[int] = []
    if message.automatic or decision.spam:
        return outbox_ids  # belt and braces: the engine already refuses these
    for reply in decision.auto_replies:
        if fold_into is not None:  # the caller sends it inside its acknowledgment
            fold_into.append(reply)
            _log_once(session, conversation, reply, now)
            continue
        try:
            queued = await enqueue_outbound(
                session, conversation, reply.body, subject=reply.subject, automatic=True,
                recipient=recipient,
            )
        except NoAddressOnChannel:
            audit.record(
                session,
                "rules",
                "rules.auto_reply_skipped",
                "conversation",
                conversation.id,
                rule=reply.rule_id,
                reason="no address on the channel",
            )
            continue
        _log_once(session, conversation, reply, now)
        outbox_ids.append(queued.outbox_id)
    return outbox_ids


def _log_once(session: AsyncSession, conversation: Conversation, reply: AutoReply,
              now: datetime) -> None:
    add_row(session, AutoReplyLog, once_per_key=reply.once_per_key,
            conversation_id=conversation.id, sent_at=now,
            expires_at=now + timedelta(seconds=reply.once_per_seconds))


async def apply_decision(
    session: AsyncSession,
    conversation: Conversation,
    message: StoredMessage,
    decision: RoutingDecision,
    *,
    now: datetime,
    fold_into: list[AutoReply] | None = None,
    pending: set[tuple[str, str]] | None = None,
    recipient: str | None = None,
) -> list[int]:
    """Apply `decision` in the caller's transaction; return outbox ids to enqueue after commit.

    With `fold_into`, auto-replies are not sent on their own but handed back there (their
    once_per windows still start): the caller sends them inside the acknowledgment, so a
    citizen gets one automatic mail for one message. An automatic message starts no timer."""
    changed = _set_fields(conversation, decision)
    assigned = await _assign(session, conversation, decision.assign)
    summary = decision_dict(replace(decision, trace=[]))  # the trace is kept on its own
    summary.pop("trace", None)
    add_row(session, RoutingDecisionRow, message_id=message.id,
            conversation_id=conversation.id, rules_version=decision.rules_version,
            decision=summary, trace=decision.trace, created_at=now)
    timers = 0 if message.automatic else await _timers(session, conversation, decision, pending)
    outbox_ids = await _auto_replies(session, conversation, message, decision, now, fold_into,
                                     recipient)
    for note in decision.notifications:
        audit.record(
            session, "rules", "rules.notify", "conversation", conversation.id, **asdict(note)
        )
    notified, events = await notify_staff(session, conversation, decision.notifications)
    outbox_ids += notified
    session.info.setdefault(PENDING_EVENTS, []).extend(events)
    if changed or assigned or timers:
        audit.record(
            session,
            "rules",
            "rules.route",
            "conversation",
            conversation.id,
            rules_version=decision.rules_version,
            message_id=message.id,
            changed=changed,
            assign=assigned,
            timers_created=timers,
        )
    return outbox_ids
