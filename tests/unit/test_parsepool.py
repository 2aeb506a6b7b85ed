"""The parse pool's child processes end with the process that owns the pool, however it ends:
a work process that is killed (and started again by `hub serve`) leaves nothing behind."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hub.parsepool import ParsePool, _each

REPO = Path(__file__).resolve().parents[2]
OWNER = """
import asyncio, os
from hub.parsepool import ParsePool

async def main():
    pool = ParsePool(1)
    print(await pool.run(os.getpid), flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def _running(pid: int) -> bool:
    """Running, not ended (a zombie nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_until_ended(pids: list[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if _running(pid)]


def test_a_killed_owner_leaves_no_parse_process_or_forkserver_behind() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=REPO, stdout=subprocess.PIPE,
                             text=True)
    left: list[int] = []
    try:
        assert owner.stdout is not None
        worker = int(owner.stdout.readline())
        forkserver = _parent_of(worker)
        left = [worker, forkserver]
        assert forkserver not in (owner.pid, os.getpid())
        assert _running(worker) and _running(forkserver)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        assert _wait_until_ended([worker, forkserver], within=30) == []
    finally:
        owner.kill()
        owner.wait()
        for pid in left:  # what a failure leaves behind is not left for the next test
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _parsed(n: int) -> object:
    if n == 2:
        return lambda: n  # a result that cannot be pickled back to the work process
    if n == 3:
        raise ValueError("a parser's own error")
    return {"n": n}


class InlineTrips(ParsePool):
    """A pool whose trips to the child run here, through pickling as a real trip does."""

    def __init__(self) -> None:
        super().__init__(processes=1)

    async def run(self, fn: Any, *args: Any) -> Any:
        return pickle.loads(pickle.dumps(fn(*pickle.loads(pickle.dumps(args)))))


async def test_a_result_that_cannot_be_sent_back_fails_its_item_not_the_batch() -> None:
    # Before, the whole trip failed, and the spool took that for the database being away:
    # the same batch again and again, no attempt counted.
    results = await InlineTrips().run_each([(_parsed, (n,)) for n in range(5)])
    assert [results[i] for i in (0, 1, 4)] == [{"n": 0}, {"n": 1}, {"n": 4}]
    assert isinstance(results[2], RuntimeError) and "could not be sent back" in str(results[2])
    assert isinstance(results[3], ValueError)


def test_the_child_sends_each_result_on_its_own() -> None:
    sent = _each([(_parsed, (n,)) for n in range(3)])
    assert [type(pickle.loads(one)).__name__ for one in sent] == ["dict", "dict", "RuntimeError"]
