"""Who gets a conversation when a rule says `assign = "@strategy"`: the strategy its queue
declares in queues.toml.

- `manual`: nobody; staff claim from the queue.
- `round_robin`: the queue's members in turn, starting after whoever got the queue's latest
  assigned conversation.
- `least_busy`: the member with the fewest open conversations of the queue, among those below
  the queue's `capacity` (open conversations per member); nobody when everyone is full.

Members are the queue's active staff; with `assign_to = "online"` in queues.toml only those
with a live workspace (hub.presence) at the moment the queue is first dealt from in the
transaction, so nobody comes back to a pile dealt out while they were away. When none of them
is online the conversation stays unassigned, to be claimed. Who is online is asked of the
provider the caller put in `session.info[ONLINE]` (the intake puts the hub's); without one,
every member counts.

Choices made inside one transaction (an intake batch) are tallied in memory, so a burst of new
conversations is spread, not handed to one person because the database has not seen the others
yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.model import ConversationStatus
from hub.storage.tables import Conversation, Queue, QueueMember, Staff

_STATE = "hub.assignment"  # session.info: the queues' states for this transaction
ONLINE = "hub.assignment.online"  # session.info: the ids of the staff who are online
OnlineIds = Callable[[], Awaitable[set[int]]]
_OPEN = (ConversationStatus.OPEN.value, ConversationStatus.PENDING.value)


@dataclass(slots=True)
class QueueTurns:
    """One queue's strategy, members (staff id -> email, by id) and who has what."""

    strategy: str
    capacity: int | None
    members: dict[int, str]
    load: dict[int, int] = field(default_factory=dict)  # open conversations per member
    last: int | None = None  # the member who got the latest conversation

    def pick(self) -> int | None:
        if not self.members or self.strategy == "manual":
            return None
        if self.strategy == "round_robin":
            return self._next_in_turn()
        return self._least_busy()

    def took(self, staff_id: int) -> None:
        self.load[staff_id] = self.load.get(staff_id, 0) + 1
        self.last = staff_id

    def _next_in_turn(self) -> int:
        """The member after the last one by id, so the turn goes on even when the last one
        is not among the members now (gone offline)."""
        order = list(self.members)
        if self.last is None:
            return order[0]
        return next((m for m in order if m > self.last), order[0])

    def _least_busy(self) -> int | None:
        room = [m for m in self.members
                if not self.capacity or self.load.get(m, 0) < self.capacity]
        return min(room, key=lambda m: (self.load.get(m, 0), m)) if room else None


async def assign_by_strategy(session: AsyncSession, conversation: Conversation) -> str | None:
    """Assign by the queue's strategy; the assignee's email, or None when nobody is chosen."""
    if conversation.queue is None:
        return None
    states: dict[str, QueueTurns] = session.info.setdefault(_STATE, {})
    turns = states.get(conversation.queue)
    if turns is None:
        with session.no_autoflush:  # the batch's new rows are tallied here, not flushed
            turns = states[conversation.queue] = await _load(session, conversation.queue)
    chosen = turns.pick()
    if chosen is None:
        return None
    conversation.assignee_id = chosen
    turns.took(chosen)
    return turns.members[chosen]


async def _load(session: AsyncSession, queue_name: str) -> QueueTurns:
    queue = (await session.execute(
        select(Queue.id, Queue.strategy, Queue.capacity, Queue.assign_to)
        .where(Queue.name == queue_name))).first()
    if queue is None:
        return QueueTurns("manual", None, {})
    members = dict((await session.execute(
        select(Staff.id, Staff.email)
        .join(QueueMember, QueueMember.staff_id == Staff.id)
        .where(QueueMember.queue_id == queue.id, Staff.active.is_(True))
        .order_by(Staff.id))).all())
    if queue.assign_to == "online" and queue.strategy != "manual":
        members = await _online_only(session, members)
    load = {staff_id: count for staff_id, count in (await session.execute(
        select(Conversation.assignee_id, func.count())
        .where(Conversation.queue == queue_name, Conversation.status.in_(_OPEN),
               Conversation.assignee_id.in_(list(members)))
        .group_by(Conversation.assignee_id))).all() if staff_id is not None}
    last = await session.scalar(
        select(Conversation.assignee_id)
        .where(Conversation.queue == queue_name, Conversation.assignee_id.is_not(None))
        .order_by(Conversation.id.desc()).limit(1))
    return QueueTurns(queue.strategy, queue.capacity, members, load, last)


async def _online_only(session: AsyncSession, members: dict[int, str]) -> dict[int, str]:
    online: OnlineIds | None = session.info.get(ONLINE)
    if online is None:
        return members
    ids = await online()
    return {staff_id: email for staff_id, email in members.items() if staff_id in ids}
