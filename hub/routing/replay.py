"""Replay: re-route stored traffic with a candidate rule set and report what would move.

Read-only: it reads inbound messages and their conversations and changes nothing. Each
conversation's first inbound message is decided again as a new conversation (the route phase
only runs for new conversations) and compared with the queue recorded when it was first routed
(falling back to the conversation's current queue).
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

from sqlalchemy import func, select

from hub.model import InboundAttachment, InboundMessage
from hub.routing import ConversationSnapshot, RoutingContext
from hub.routing.engine import RuleSet
from hub.storage.tables import Attachment, Conversation, Message, RoutingDecisionRow

SAMPLES = 5
BATCH = 500


@dataclass(slots=True)
class ReplayResult:
    total: int = 0
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    spam_changes: int = 0

    @property
    def changed(self) -> int:
        return sum(n for (a, b), n in self.moves.items() if a != b)

    def lines(self, version: str, since: datetime) -> list[str]:
        out = [
            f"replayed {self.total} conversations since {since.isoformat()} with rules {version}",
            f"unchanged: {self.total - self.changed}",
            f"would move: {self.changed}",
        ]
        for (old, new), n in sorted(self.moves.items(), key=lambda kv: -kv[1]):
            if old != new:
                ids = ", ".join(f"#{i}" for i in self.samples[(old, new)])
                out.append(f"  {old} -> {new}: {n}  (e.g. {ids})")
        if self.spam_changes:
            out.append(f"spam flag would change on {self.spam_changes} conversations")
        return out


def as_inbound(row: Message, types: list[str]) -> InboundMessage:
    """A stored inbound message as the rules saw it (attachments by content type only)."""
    return InboundMessage(
        channel=row.channel,
        provider_id=row.provider_id or str(row.id),
        sender=row.sender or "",
        text=row.body or "",
        subject=row.subject,
        recipient=row.recipient,
        automatic=row.automatic,
        language=row.language,
        received_at=row.received_at or row.created_at,
        attachments=tuple(InboundAttachment(f"a{i}", t, b"") for i, t in enumerate(types)),
        inbox_queue=(row.meta or {}).get("inbox_queue"),
    )


async def _batch(session: Any, since: datetime, after_id: int) -> list[Any]:
    first = (
        select(func.min(Message.id))
        .where(Message.direction == "inbound")
        .group_by(Message.conversation_id)
        .scalar_subquery()
    )
    stmt = (
        select(Message, Conversation)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Message.id.in_(first), Message.created_at >= since, Message.id > after_id)
        .order_by(Message.id)
        .limit(BATCH)
    )
    return list((await session.execute(stmt)).all())


async def _recorded(session: Any, message_ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = await session.execute(
        select(RoutingDecisionRow.message_id, RoutingDecisionRow.decision)
        .where(RoutingDecisionRow.message_id.in_(message_ids))
        .order_by(RoutingDecisionRow.id)
    )
    return {mid: dec for mid, dec in rows.all()}


async def _types(session: Any, message_ids: list[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for mid, ctype in (
        await session.execute(
            select(Attachment.message_id, Attachment.content_type).where(
                Attachment.message_id.in_(message_ids)
            )
        )
    ).all():
        out[mid].append(ctype)
    return out


async def _recent(
    session: Any, contact_id: int, before: datetime, days: int
) -> tuple[datetime, ...]:
    if days <= 0:
        return ()
    rows = await session.scalars(
        select(Message.created_at)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.contact_id == contact_id,
            Message.direction == "inbound",
            Message.created_at < before,
            Message.created_at >= before - timedelta(days=days),
        )
    )
    return tuple(rows)


async def replay(
    session_factory: Callable[[], Any],
    ruleset: RuleSet,
    since: datetime,
    *,
    progress: TextIO | None = sys.stderr,
    limit: int | None = None,
) -> ReplayResult:
    """`session_factory()` must be an async context manager yielding a read session."""
    result = ReplayResult()
    after = 0
    async with session_factory() as session:
        while limit is None or result.total < limit:
            rows = await _batch(session, since, after)
            if not rows:
                break
            ids = [m.id for m, _ in rows]
            recorded, types = await _recorded(session, ids), await _types(session, ids)
            for message, conv in rows:
                await _one(
                    session,
                    ruleset,
                    message,
                    conv,
                    recorded.get(message.id),
                    types[message.id],
                    result,
                )
            after = ids[-1]
            if progress is not None:
                progress.write(f"\rreplayed {result.total} conversations…")
                progress.flush()
    if progress is not None:
        progress.write("\n")
    return result


async def _one(
    session: Any,
    ruleset: RuleSet,
    message: Message,
    conv: Conversation,
    recorded: dict[str, Any] | None,
    types: list[str],
    result: ReplayResult,
) -> None:
    msg = as_inbound(message, types)
    snapshot = ConversationSnapshot(
        id=conv.id,
        is_new=True,
        channel=conv.channel,
        status="open",
        queue=None,
        priority="normal",
        tags=frozenset(),
        reference=conv.reference,
    )
    ctx = RoutingContext(
        message=msg,
        conversation=snapshot,
        contact_id=conv.contact_id,
        now=msg.received_at,
        recent_inbound=await _recent(
            session, conv.contact_id, msg.received_at, ruleset.history_days
        ),
    )
    decision = ruleset.decide(ctx)
    old = (recorded or {}).get("queue") or conv.queue or "-"
    new = "(spam)" if decision.spam else (decision.queue or "-")
    if bool((recorded or {}).get("spam", conv.spam)) != decision.spam:
        result.spam_changes += 1
    old = "(spam)" if (recorded or {}).get("spam", conv.spam) else old
    result.total += 1
    result.moves[(old, new)] += 1
    if old != new and len(result.samples[(old, new)]) < SAMPLES:
        result.samples[(old, new)].append(conv.id)
