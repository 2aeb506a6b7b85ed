"""Delivery of outbox items: claim, send through the channel's adapter, record the outcome.
Transient failures retry with exponential backoff and jitter; permanent ones (or too many tries)
go to the dead letter, where staff see them.

Each process has one `DeliveryRunner` on its loop. Concurrent deliveries share the database
work: the ids that wait for a claim go into one claiming statement, and the outcomes that wait
to be recorded into one transaction (workers/claims.py), so a busy process makes a few round
trips per batch instead of some twenty per mail. A row is claimed only once a send slot is
free for it, so nothing claimed waits long enough for its lease to lapse behind other sends.

A job that runs twice does not send twice: the claim is a guarded UPDATE (only one worker moves
an item from pending to sending), and a sent item is never claimed again.

RQ jobs (`deliver_many`, and `deliver` for jobs of earlier versions) hand their ids to the
worker process's in-process jobs and return once there is room for them: the RQ worker takes
its next job while this one's sends are still under way. The outbox stays the record: a worker
that dies leaves claimed rows to their lease and unclaimed ones pending, and the sweeper hands
both out again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Generic, TypeVar

from hub import metrics
from hub.adapters.base import DeliveryError, PermanentError, RecipientOptedOut
from hub.config import OutboxSection
from hub.events import Event
from hub.model import DeliveryStatus, OutboundAttachment, OutboundMessage, OutboxState, utcnow
from hub.tokens import make_reply_token
from hub.workers import claims
from hub.workers.claims import Claimed, Outcome

if TYPE_CHECKING:
    from hub.app import Hub

log = logging.getLogger(__name__)

SENDS = 16  # sends under way at once per process (also the relay sessions kept open)
BATCH = 64  # ids per claiming statement, outcomes per recording transaction, at most
# While this process works a spool backlog, a send waits (up to this long) before it is
# claimed: the burst is routed first (each mail's acknowledgment is queued with it), and the
# two no longer take turns on one loop and one write lock. Bounded, so a staff reply is never
# held behind an endless backlog.
INTAKE_FIRST_SECONDS = 5.0
# An acknowledgment or auto-reply that the intake queued in this process waits for the backlog
# it came with, up to this long, before it takes a send slot: a burst is stored and routed
# first, and the citizen hears back within a minute. A staff reply keeps the bound above.
AUTOMATIC_HOLD_SECONDS = 60.0
_OUTCOME = {OutboxState.SENT.value: "sent", OutboxState.PENDING.value: "retry",
            OutboxState.DEAD.value: "dead"}
K = TypeVar("K")
R = TypeVar("R")


def deliver(outbox_id: int) -> int:
    """RQ job of earlier versions (one id)."""
    return deliver_many([outbox_id])


def deliver_many(outbox_ids: list[int]) -> int:
    """The RQ job: hands the ids to this worker's in-process jobs and returns once they fit."""
    from hub.app import worker_hub
    from hub.jobs import RQJobs

    hub = worker_hub()
    if isinstance(hub.jobs, RQJobs):
        hub.jobs.taken(outbox_ids)
    return hub.run_sync(hub.local_jobs.accept(outbox_ids))


async def deliver_async(hub: Hub, outbox_id: int) -> str:
    """Returns what happened: "sent", "retry", "dead" or "skipped" (not ours to send now)."""
    return await hub.delivery.deliver_one(outbox_id)


def backoff_seconds(attempts: int, policy: OutboxSection) -> float:
    base = min(policy.backoff_max_seconds, policy.backoff_base_seconds * 2 ** max(attempts - 1, 0))
    return base * (1 + random.uniform(-policy.backoff_jitter, policy.backoff_jitter))


class Coalesced(Generic[K, R]):
    """Calls made while a batch is running go into the next batch together: one round trip
    (a statement, a transaction) per batch instead of one per call. `run` answers each item
    of a batch in order, with its result or the exception that is that item's alone."""

    def __init__(self, run: Callable[[list[K]], Awaitable[list[R | BaseException]]],
                 max_batch: int) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[K, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: K) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[:self._max_batch]
            del self._pending[:self._max_batch]
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class DeliveryRunner:
    """This process's deliveries: claims and outcomes batched across concurrent sends."""

    def __init__(self, hub: Hub, *, sends: int = SENDS, batch: int = BATCH) -> None:
        self.hub = hub
        self._sends = asyncio.Semaphore(sends)
        # Claimed rows wait for a send slot at most one round of sends: far within their lease.
        self._in_hand = asyncio.Semaphore(2 * sends)
        self._write: Coalesced[int | Outcome, Claimed | None] = Coalesced(self._write_batch,
                                                                          batch)
        self._automatic: set[int] = set()  # see queued_by_intake

    def queued_by_intake(self, outbox_ids: Sequence[int]) -> None:
        """Ids of automatic sends the intake committed here, to hold (`hold_if_automatic`)."""
        self._automatic.update(outbox_ids)

    async def hold_if_automatic(self, outbox_id: int) -> None:
        """For an id from `queued_by_intake`: returns once no spool backlog is worked here, or
        after AUTOMATIC_HOLD_SECONDS; at once for any other id."""
        if outbox_id in self._automatic:
            self._automatic.discard(outbox_id)
            await self.hub.spool_worker.idle(within=AUTOMATIC_HOLD_SECONDS)

    async def deliver(self, outbox_ids: Sequence[int]) -> list[str]:
        return list(await asyncio.gather(*(self.deliver_one(i) for i in outbox_ids)))

    async def deliver_one(self, outbox_id: int) -> str:
        """"sent", "retry", "dead", or "skipped" when the item is not ours to send now."""
        await self.hub.spool_worker.idle(within=INTAKE_FIRST_SECONDS)
        async with self._in_hand:
            item = await self._write(outbox_id)
            if item is None:
                return "skipped"
            async with self._sends:
                outcome = await self._attempt(item)
        await self._write(outcome)
        return _OUTCOME[outcome.state]

    # -- the send -----------------------------------------------------------------------------

    async def _attempt(self, item: Claimed) -> Outcome:
        adapter = self.hub.adapters.get(item.channel)
        try:
            if adapter is None:
                raise PermanentError(f"no adapter is configured for channel {item.channel!r}")
            result = await adapter.send(await self._outbound(item))
        except DeliveryError as exc:
            return self._failed(item, exc, transient=exc.transient)
        except Exception as exc:  # an adapter bug: retry, it may be a passing condition
            log.exception("adapter %s raised unexpectedly", item.channel)
            return self._failed(item, exc, transient=True)
        metrics.DELIVERIES.labels(item.channel, "sent").inc()
        return Outcome(item, OutboxState.SENT.value, provider_id=result.provider_id,
                       thread_key=result.thread_key,
                       status=result.status or DeliveryStatus.SENT.value)

    async def _outbound(self, item: Claimed) -> OutboundMessage:
        attachments = tuple([OutboundAttachment(a.filename, a.content_type,
                                                await self.hub.blobs.get(a.sha256))
                             for a in item.attachments])
        return OutboundMessage(
            message_id=item.message_id, conversation_id=item.conversation_id,
            channel=item.channel, to=item.to, body=item.body,
            idempotency_key=item.idempotency_key, reference=item.reference,
            subject=item.subject, attachments=attachments, automatic=item.automatic,
            reply_token=None if item.internal else make_reply_token(item.conversation_id,
                                                                    self.hub.reply_secret),
            in_reply_to=item.in_reply_to, references=item.references)

    def _failed(self, item: Claimed, exc: BaseException, *, transient: bool) -> Outcome:
        policy = self.hub.settings.outbox
        error = f"{type(exc).__name__}: {exc}"[:2000]
        if transient and item.attempts < policy.max_attempts:
            wait = getattr(exc, "retry_after", None) or backoff_seconds(item.attempts, policy)
            due = utcnow() + timedelta(seconds=wait)
            outcome = Outcome(item, OutboxState.PENDING.value, error=error, next_attempt_at=due)
        else:
            outcome = Outcome(item, OutboxState.DEAD.value, error=error,
                              opted_out=isinstance(exc, RecipientOptedOut))
        kind = "transient" if transient else "permanent"
        metrics.DELIVERY_FAILURES.labels(item.channel, kind).inc()
        metrics.DELIVERIES.labels(item.channel, _OUTCOME[outcome.state]).inc()
        log.warning("delivery of outbox item %s failed (%s, %s): %s", item.outbox_id, kind,
                    _OUTCOME[outcome.state], type(exc).__name__)
        return outcome

    # -- the database, a batch at a time ------------------------------------------------------

    async def _write_batch(self, items: list[int | Outcome]) -> list[Claimed | BaseException | None]:
        """One transaction for what waits: the outcomes to record, then the ids to claim."""
        outcomes = [item for item in items if isinstance(item, Outcome)]
        wanted = [item for item in items if not isinstance(item, Outcome)]
        try:
            claimed = await self._transaction(outcomes, wanted)
        except Exception as exc:
            if len(outcomes) + bool(wanted) <= 1:
                return [exc] * len(items)
            # One outcome the database refuses must not cost the others theirs: apart.
            return await self._apart(items, outcomes, wanted)
        return _answers(items, claimed)

    async def _apart(self, items: list[int | Outcome], outcomes: list[Outcome],
                     wanted: list[int]) -> list[Claimed | BaseException | None]:
        claimed: dict[int, Claimed] | BaseException = {}
        if wanted:
            try:
                claimed = await self._transaction([], wanted)
            except Exception as exc:
                claimed = exc
        failed: dict[int, BaseException] = {}  # by id() of the outcome
        for outcome in outcomes:
            try:
                await self._transaction([outcome], [])
            except Exception as exc:
                log.exception("could not record the outcome of outbox item %s; its lease will "
                              "bring it back", outcome.item.outbox_id)
                failed[id(outcome)] = exc
        return _answers(items, claimed, failed)

    async def _transaction(self, outcomes: list[Outcome], wanted: list[int]) -> dict[int, Claimed]:
        lease = timedelta(seconds=self.hub.settings.outbox.stale_after_seconds)
        now = utcnow()
        async with self.hub.db.write_connection() as conn:
            changes = await claims.record(conn, outcomes, now) if outcomes else []
            claimed = await claims.claim(conn, wanted, now, lease)
            await claims.load(conn, claimed)
        for change in changes:  # staff see a sent or failed reply at once
            self.hub.events.publish(Event("delivery.status", change.conversation_id, change.queue,
                                          {"message_id": change.message_id,
                                           "status": change.status}))
        return {item.outbox_id: item for item in claimed}


def _answers(items: list[int | Outcome], claimed: dict[int, Claimed] | BaseException,
             failed: dict[int, BaseException] | None = None) -> list[Claimed | BaseException | None]:
    """Each item's answer in order: an id's claim (an id asked for twice in one batch, by two
    jobs, is claimed for the first asker) or None; an outcome's None; or the item's failure."""
    answers: list[Claimed | BaseException | None] = []
    for item in items:
        if isinstance(item, Outcome):
            answers.append((failed or {}).get(id(item)))
        elif isinstance(claimed, BaseException):
            answers.append(claimed)
        else:
            answers.append(claimed.pop(item, None))
    return answers
