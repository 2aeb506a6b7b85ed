"""Applying a routing decision to a conversation inside the intake's transaction."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hub import audit
from hub.outbound import NoAddressOnChannel, outbox_id_for, queue_outbound
from hub.routing import RoutingDecision
from hub.storage.tables import (
    AutoReplyLog,
    Conversation,
    ConversationTimer,
    Message,
    RoutingDecisionRow,
)


async def apply_decision(session: AsyncSession, conversation: Conversation, message: Message,
                         decision: RoutingDecision, *, now: datetime) -> list[int]:
    """Set queue/priority/tags/status/spam, record the decision; return new outbox ids."""
    if decision.queue:
        conversation.queue = decision.queue
    if decision.priority:
        conversation.priority = decision.priority
    if decision.tags_add or decision.tags_remove:
        tags = [t for t in (conversation.tags or []) if t not in decision.tags_remove]
        tags += [t for t in decision.tags_add if t not in tags]
        conversation.tags = tags
    if decision.status:
        conversation.status = decision.status
    if decision.spam:
        conversation.spam = True
    if decision.language and not conversation.language:
        conversation.language = decision.language
    session.add(RoutingDecisionRow(
        message_id=message.id, conversation_id=conversation.id,
        rules_version=decision.rules_version,
        decision={"queue": decision.queue, "priority": decision.priority,
                  "tags_add": list(decision.tags_add), "tags_remove": list(decision.tags_remove),
                  "status": decision.status, "spam": decision.spam,
                  "stopped": decision.stopped, "assign": decision.assign},
        trace=decision.trace,
    ))
    for timer in decision.timers:
        session.add(ConversationTimer(conversation_id=conversation.id, rule_id=timer.rule_id,
                                      step=timer.step, due_at=timer.due_at,
                                      actions=timer.actions))
    outbox_ids = []
    if not message.automatic and not decision.spam:
        for reply in decision.auto_replies:
            try:
                out = await queue_outbound(session, conversation, reply.body,
                                           subject=reply.subject, automatic=True)
            except NoAddressOnChannel:
                continue
            session.add(AutoReplyLog(
                once_per_key=reply.once_per_key, conversation_id=conversation.id,
                sent_at=now, expires_at=now + timedelta(seconds=reply.once_per_seconds)))
            outbox_ids.append(await outbox_id_for(session, out.id))
    for note in decision.notifications:
        audit.record(session, "rules", "notify", "conversation", conversation.id, **asdict(note))
    return outbox_ids
