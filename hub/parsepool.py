"""Parsing off the event loop: spooled payloads are parsed in child processes, each within a
time budget.

A hostile payload (a thousand nested MIME parts, a header built to make a parser backtrack)
must never hold the loop that answers SMTP and HTTP, and must never hold the spool either. In
a child process the parse uses the other core instead of competing for the loop's GIL, and a
parse that overruns its budget is ended by killing the child: the caller then keeps the
payload raw and flagged instead. With `processes = 0` parsing runs on a thread (no budget can
be enforced there; the parsers' own caps still bound it).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import select
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class ParseTimeout(Exception):
    """The parse did not finish within its budget; its child process was ended."""


class ParsePool:
    """Runs picklable parse functions in a small pool of child processes."""

    def __init__(self, processes: int = 1, budget: float = 10.0) -> None:
        self.processes = processes
        self.budget = budget
        self._executor: Executor | None = None

    def _pool(self) -> Executor:
        if self._executor is None:
            if self.processes <= 0:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="parse")
            else:
                # forkserver: a child forked from the hub would inherit its loop and threads.
                context = multiprocessing.get_context("forkserver")
                self._executor = ProcessPoolExecutor(self.processes, mp_context=context,
                                                     initializer=_exit_with,
                                                     initargs=(os.getpid(),))
        return self._executor

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a child; ParseTimeout past the budget; the parser's own exception as is."""
        for attempt in (1, 2):
            future = asyncio.wrap_future(self._pool().submit(fn, *args))
            try:
                if self.processes <= 0:
                    return await future
                async with asyncio.timeout(self.budget):
                    return await future
            except TimeoutError:
                self._kill()
                raise ParseTimeout(f"parse took longer than {self.budget:g} s") from None
            except BrokenProcessPool:
                # A child died (killed for another item's overrun, or crashed on this one).
                self._kill()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def run_each(self, calls: Sequence[tuple[Callable[..., T], tuple[Any, ...]]]
                       ) -> list[T | Exception]:
        """Every fn(*args) of `calls`, in one trip to a child: each result, or the exception
        that call raised. Past the budget (one hostile payload among them), each call goes
        again on its own, so only that one ends as ParseTimeout."""
        if len(calls) <= 1 or self.processes <= 0:
            return [await self._one(fn, args) for fn, args in calls]
        try:
            sent = await self.run(_each, list(calls))
        except (ParseTimeout, BrokenProcessPool):
            return [await self._one(fn, args) for fn, args in calls]
        return [_received(one) for one in sent]

    async def _one(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T | Exception:
        try:
            return await self.run(fn, *args)
        except Exception as exc:
            return exc

    def _kill(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # ProcessPoolExecutor has no public way to end a busy worker before Python 3.14.
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def _exit_with(owner: int) -> None:
    """In the child, first: end when `owner` (the process that made the pool) ends.

    Nothing else would: a pool worker waits on its queue, whose write end it holds itself, and
    its parent is the forkserver, which lives as long as any child holds its keep-alive pipe
    (every child does). A work process that was killed would leave its parse process and the
    forkserver behind for good, two more each time `hub serve` starts it again. Linux only
    (pidfd), as the work process's own PR_SET_PDEATHSIG is.
    """
    try:
        pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        return
    threading.Thread(target=_exit_when_readable, args=(pidfd,), name="owner-watch",
                     daemon=True).start()


def _exit_when_readable(pidfd: int) -> None:
    select.select([pidfd], [], [])  # readable once the owner has ended
    os._exit(0)


def _each(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[bytes]:
    """In the child: every call's result, or the exception standing for it, pickled one by one:
    a result that cannot be sent back is that item's error, and never fails the whole trip
    (which the spool would take for the database being away, and retry for ever)."""
    sent: list[bytes] = []
    for fn, args in calls:
        try:
            outcome = fn(*args)
        except Exception as exc:
            outcome = exc
        sent.append(_sendable(outcome))
    return sent


def _sendable(outcome: Any) -> bytes:
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        failed = RuntimeError(f"{type(outcome).__name__} could not be sent back from the "
                              f"parse process ({type(exc).__name__})")
        return pickle.dumps(failed, protocol=pickle.HIGHEST_PROTOCOL)


def _received(sent: bytes) -> Any:
    try:
        return pickle.loads(sent)  # noqa: S301 - our own child's pickles, over a private pipe
    except Exception as exc:
        return RuntimeError(f"a parse result could not be read back ({type(exc).__name__})")
