"""What the workspace reads beyond the API's own views: the sidebar's counts per queue (SLA at
risk included, see hub.web.staff.sla), the channels a reply can take, and the list's filters
parsed from a query string.

Visibility comes from hub.service; the list and the conversation detail are the API's
(hub.service.list_items, hub.web.views); only workspace-specific shapes live here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, false, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub import service
from hub.model import PRIORITY_RANK, ConversationStatus
from hub.routing.timers import pending_due_before
from hub.service import ConversationFilter
from hub.storage.tables import Conversation, Identity, Staff

VIEWS = {"open": "All open", "unassigned": "Unassigned", "mine": "Mine",
         "at_risk": "SLA at risk"}
STATUSES = tuple(s.value for s in ConversationStatus)
PAGE_SIZE = 25


@dataclass(frozen=True, slots=True)
class QueueCount:
    name: str
    title: str
    open: int
    unassigned: int
    mine: int
    at_risk: int = 0  # open, with a pending SLA timer overdue or due soon


@dataclass(frozen=True, slots=True)
class ChannelOption:
    channel: str
    addresses: tuple[str, ...]
    opted_out: bool  # every address on it said STOP: shown, never offered


@dataclass(frozen=True, slots=True)
class ListParams:
    view: str = "open"
    queue: str | None = None
    channel: str | None = None
    status: str | None = None
    q: str | None = None
    cursor: str | None = None
    tag: str | None = None
    priority: str | None = None

    def filter(self, after: tuple[datetime, int] | None,
               risk_before: datetime | None = None) -> ConversationFilter:
        """The service's filter; `risk_before` is the SLA horizon the "at_risk" view uses."""
        status = self.status or ConversationStatus.OPEN.value
        assignee = {"mine": "me", "unassigned": "none"}.get(self.view)
        due = risk_before if self.view == "at_risk" else None
        return ConversationFilter(queue=self.queue, status=status, channel=self.channel,
                                  text=self.q, assignee=assignee, after=after,
                                  sla_due_before=due, tag=self.tag, priority=self.priority)

    def query(self, **changes: str | None) -> dict[str, str]:
        """These filters as query parameters (for links), with `changes` applied."""
        values = {"view": self.view, "queue": self.queue, "channel": self.channel,
                  "status": self.status, "q": self.q, "tag": self.tag,
                  "priority": self.priority} | changes
        return {k: v for k, v in values.items() if v}


def _one(query: Mapping[str, str], name: str, longest: int) -> str | None:
    value = query.get(name, "").strip()
    return value[:longest] if value else None


def list_params(query: Mapping[str, str], channels: Collection[str]) -> ListParams:
    """The list's filters from a query string; values it cannot use are dropped, not errors."""
    view = query.get("view", "open")
    channel = _one(query, "channel", 16)
    status = _one(query, "status", 16)
    priority = _one(query, "priority", 16)
    return ListParams(tag=_one(query, "tag", 64),
                      priority=priority if priority in PRIORITY_RANK else None,
                      view=view if view in VIEWS else "open", queue=_one(query, "queue", 64),
                      channel=channel if channel in channels else None,
                      status=status if status in STATUSES else None,
                      q=_one(query, "q", 200), cursor=_one(query, "cursor", 200))


async def queue_counts(session: AsyncSession, staff: Staff,
                       risk_before: datetime | None = None) -> list[QueueCount]:
    """The caller's queues with their open, unassigned, own open and SLA-at-risk open
    conversations (pending timers due by `risk_before`; none counted without it), in one
    grouped query."""
    queues = await service.queues_for(session, staff)
    risky = pending_due_before(risk_before) if risk_before is not None else false()
    rows = await session.execute(
        select(Conversation.queue, func.count(),
               func.sum(case((Conversation.assignee_id.is_(None), 1), else_=0)),
               func.sum(case((Conversation.assignee_id == staff.id, 1), else_=0)),
               func.sum(case((risky, 1), else_=0)))
        .where(Conversation.status == ConversationStatus.OPEN.value,
               Conversation.spam.is_(False),
               Conversation.queue.in_([q.name for q in queues]))
        .group_by(Conversation.queue))
    counts = {queue: tuple(int(n or 0) for n in numbers) for queue, *numbers in rows}
    return [QueueCount(q.name, q.title, *counts.get(q.name, (0, 0, 0, 0))) for q in queues]


@dataclass(frozen=True, slots=True)
class IdentityRow:
    channel: str
    address: str
    opted_out: bool


async def identities_of(session: AsyncSession, contact_id: int) -> list[IdentityRow]:
    """Every identity of the contact, by channel, with its opt-out state."""
    rows = await session.execute(
        select(Identity.channel, Identity.address, Identity.opted_out)
        .where(Identity.contact_id == contact_id).order_by(Identity.channel, Identity.id))
    return [IdentityRow(channel, address, bool(opted_out)) for channel, address, opted_out in rows]


def reply_channels(identities: Iterable[IdentityRow],
                   configured: Collection[str]) -> list[ChannelOption]:
    """The configured channels the contact has an address on, opted-out ones marked."""
    found: dict[str, list[IdentityRow]] = {}
    for identity in identities:
        if identity.channel in configured:
            found.setdefault(identity.channel, []).append(identity)
    return [ChannelOption(channel, tuple(i.address for i in items),
                          all(i.opted_out for i in items))
            for channel, items in found.items()]
