"""Hub events (new message, reply, status change, conversation update) for live views: fanned out
to this process's subscribers, and, with `[redis] url`, to every other hub process too.

Events are notifications, not records: the database is the truth and a live view that missed
something catches up by reading it. So publishing never waits and never fails the caller: a slow
subscriber loses events (counted), and while Redis is away events cross no process boundary
(counted) but still reach this process's own subscribers. Each event carries its conversation's
queue, so a subscriber can keep to what its caller may see.

Across processes: every `hub serve` subscribes to one Redis pub/sub channel; every process
(serve or worker) publishes to it. A process fans out its own events directly and skips their
echo from Redis, so a subscriber sees each event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from hub import metrics

log = logging.getLogger(__name__)
WIRE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "message.inbound", "message.outbound", "conversation.updated", "delivery.status"
    conversation_id: int
    queue: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "conversation_id": self.conversation_id, "queue": self.queue,
                **self.data}


class EventBus:
    """Fan-out to bounded subscriber queues; a slow subscriber loses events, never blocks intake."""

    def __init__(self, max_backlog: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._max_backlog = max_backlog
        self.relay: RedisRelay | None = None

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._max_backlog)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.discard(queue)

    def publish(self, event: Event) -> None:
        self.deliver(event)
        if self.relay is not None:
            self.relay.send(event)

    def deliver(self, event: Event) -> None:
        """To this process's subscribers only."""
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                metrics.EVENTS_DROPPED.labels("subscriber_behind").inc()
                log.warning("event subscriber is behind; dropping %s", event.kind)


class RedisRelay:
    """Carries a bus's events to and from the other hub processes over Redis pub/sub."""

    def __init__(self, bus: EventBus, url: str, channel: str, *, max_pending: int = 10_000) -> None:
        self.bus = bus
        self.url = url
        self.channel = channel
        self.origin = uuid.uuid4().hex
        self._pending: asyncio.Queue[bytes] | None = None
        self._max_pending = max_pending
        self._sender: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        bus.relay = self

    def send(self, event: Event) -> None:
        """Queue the event for Redis (from any coroutine on the loop that owns this relay)."""
        if self._pending is None:
            self._pending = asyncio.Queue(self._max_pending)
            self._sender = asyncio.get_running_loop().create_task(self._send_pending())
        wire = json.dumps({"v": WIRE_VERSION, "origin": self.origin, **_fields(event)})
        try:
            self._pending.put_nowait(wire.encode())
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.labels("redis_behind").inc()

    async def _send_pending(self) -> None:
        from redis.asyncio import Redis

        assert self._pending is not None
        client = Redis.from_url(self.url)
        try:
            while True:
                first = await self._pending.get()
                batch = [first]
                while not self._pending.empty() and len(batch) < 500:
                    batch.append(self._pending.get_nowait())
                await self._publish(client, batch)
                for _ in batch:
                    self._pending.task_done()
        finally:
            await client.aclose()

    async def _publish(self, client: Any, batch: list[bytes]) -> None:
        try:
            async with client.pipeline(transaction=False) as pipe:
                for wire in batch:
                    pipe.publish(self.channel, wire)
                await pipe.execute()
        except Exception as exc:  # Redis away: these events stay in this process
            metrics.EVENTS_DROPPED.labels("redis_unavailable").inc(len(batch))
            log.warning("events not published to Redis: %s", type(exc).__name__)
            await asyncio.sleep(1.0)

    async def listen(self) -> None:
        """Subscribe (once, for `hub serve`); reconnects with back-off until stopped."""
        self._listener = asyncio.get_running_loop().create_task(self._listen_forever())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await self.listening.wait()

    async def _listen_forever(self) -> None:
        from redis.asyncio import Redis

        delay = 0.5
        while True:
            client = Redis.from_url(self.url)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.listening.set()
                    delay = 0.5
                    async for message in pubsub.listen():
                        self._receive(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("event subscription lost (%s); again in %.1f s",
                            type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)
            finally:
                await client.aclose()

    def _receive(self, data: Any) -> None:
        try:
            fields = json.loads(data)
            if fields.pop("v", None) != WIRE_VERSION or fields.pop("origin", None) == self.origin:
                return
            self.bus.deliver(Event(str(fields["kind"]), int(fields["conversation_id"]),
                                   fields.get("queue"), dict(fields.get("data") or {})))
        except (ValueError, TypeError, KeyError):
            log.warning("ignored a malformed event from Redis")

    async def close(self) -> None:
        """Stop listening; give what is still queued for Redis a moment to go out."""
        if self._pending is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._pending.join()
        for task in (self._listener, self._sender):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._listener = self._sender = None


def _fields(event: Event) -> dict[str, Any]:
    return {"kind": event.kind, "conversation_id": event.conversation_id, "queue": event.queue,
            "data": event.data}
