"""Staff presence: who of the staff has a live workspace, i.e. an open `/staff/events` or
`/api/v1/events` WebSocket (hub.web.live registers the socket's staff member while it is open).

Each process counts its own open sockets per staff member. With `[redis] url` every process
also keeps one Redis sorted set, `{queue_prefix}:presence`, up to date: one member per
(staff, process), scored with the moment it expires. A process refreshes its members every
`REFRESH_SECONDS` while their sockets are open and removes them when the last one closes, so a
process that dies without saying goodbye drops out after `TTL_SECONDS`. Without Redis (or while
it is away) presence is this process's own, which for a single `hub serve` is the whole truth.

When a staff member comes online or goes offline in this process (their first socket opened,
their last one closed) the hub's event bus carries `STAFF_PRESENCE` (`{"staff_id", "online"}`,
conversation id 0): the chat tells its visitors of the change live (adapters/webchat/live.py).
It crosses processes with Redis like every event; the staff workspace is not sent it.

Public API: `staff_online(hub, queue)`, `online_staff_ids(hub)`, and for the socket handler
`present(hub, staff_id)` (or `register` / `unregister`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.events import Event, EventBus
from hub.soft_redis import SoftRedis
from hub.storage.tables import Queue, QueueMember, Staff

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)
TTL_SECONDS = 45.0
# A `webchat.` kind: between the hub's processes only (hub.web.live forwards none to staff).
STAFF_PRESENCE = "webchat.staff_presence"
REFRESH_SECONDS = 15.0


class Presence:
    """One hub's presence: its own sockets per staff member, mirrored to Redis when configured."""

    def __init__(self, redis_url: str, prefix: str, events: EventBus | None = None) -> None:
        self.redis_url = redis_url
        self.events = events
        self.key = f"{prefix}:presence"
        self.process = uuid.uuid4().hex
        self.local: Counter[int] = Counter()
        self._shared = SoftRedis(redis_url, "presence")
        self._refresher: asyncio.Task[None] | None = None

    async def register(self, staff_id: int) -> None:
        self.local[staff_id] += 1
        if self.local[staff_id] == 1:
            await self._redis("zadd", self.key, {self._member(staff_id): time.time() + TTL_SECONDS})
            self._tell(staff_id, True)
        if self.redis_url and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def unregister(self, staff_id: int) -> None:
        if self.local[staff_id] <= 0:
            return
        self.local[staff_id] -= 1
        if self.local[staff_id] == 0:
            del self.local[staff_id]
            await self._redis("zrem", self.key, self._member(staff_id))
            self._tell(staff_id, False)

    async def online_ids(self) -> set[int]:
        ids = set(self.local)
        remote = await self._redis("zrangebyscore", self.key, time.time(), "+inf")
        for member in remote or ():
            with contextlib.suppress(ValueError):
                ids.add(int(bytes(member).split(b":", 1)[0]))
        return ids

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        await self._shared.close()
        self._refresher = None

    def _tell(self, staff_id: int, online: bool) -> None:
        """After Redis holds the change, so whoever hears it reads the new state."""
        if self.events is not None:
            self.events.publish(Event(STAFF_PRESENCE, 0, None,
                                      {"staff_id": staff_id, "online": online}))

    def _member(self, staff_id: int) -> str:
        return f"{staff_id}:{self.process}"

    async def _refresh_forever(self) -> None:
        while self.local:
            await asyncio.sleep(REFRESH_SECONDS)
            await self.refresh()

    async def refresh(self) -> None:
        """Push this process's members' expiry forward; sweep what other processes left behind."""
        now = time.time()
        if self.local:
            expiry = now + TTL_SECONDS
            await self._redis("zadd", self.key, {self._member(i): expiry for i in self.local})
        await self._redis("zremrangebyscore", self.key, "-inf", now)

    async def _redis(self, command: str, *args: Any) -> Any:
        return await self._shared.call(command, *args)


_PRESENCE: weakref.WeakKeyDictionary[Hub, Presence] = weakref.WeakKeyDictionary()


def presence_of(hub: Hub) -> Presence:
    found = _PRESENCE.get(hub)
    if found is None:
        redis = hub.settings.redis
        found = _PRESENCE[hub] = Presence(redis.url, redis.queue_prefix, hub.events)
    return found


async def register(hub: Hub, staff_id: int) -> None:
    await presence_of(hub).register(staff_id)


async def unregister(hub: Hub, staff_id: int) -> None:
    await presence_of(hub).unregister(staff_id)


@contextlib.asynccontextmanager
async def present(hub: Hub, staff_id: int) -> AsyncIterator[None]:
    """The staff member counts as online for as long as the block runs."""
    await register(hub, staff_id)
    try:
        yield
    finally:
        await asyncio.shield(unregister(hub, staff_id))


async def close(hub: Hub) -> None:
    """Stop refreshing and close the Redis client (the hub stopping)."""
    found = _PRESENCE.pop(hub, None)
    if found is not None:
        await found.close()


async def online_staff_ids(hub: Hub) -> set[int]:
    """Every staff member with a live workspace, in any process that shares our Redis."""
    return await presence_of(hub).online_ids()


async def staff_online(hub: Hub, queue: str | None = None) -> bool:
    """Whether a member of `queue` (any staff member when None) has a live workspace."""
    ids = await online_staff_ids(hub)
    if not ids or queue is None:
        return bool(ids)
    async with hub.db.read() as session:
        found = await session.scalar(
            select(QueueMember.staff_id)
            .join(Queue, Queue.id == QueueMember.queue_id)
            .join(Staff, Staff.id == QueueMember.staff_id)
            .where(Queue.name == queue, Staff.active.is_(True), QueueMember.staff_id.in_(ids))
            .limit(1))
    return found is not None
