"""`hub serve` killed with SIGKILL in the middle of a sustained SMTP run, then started again
while the senders retry as mail servers do: every mail that got its 250 is stored, and no mail
is stored twice, on SQLite and PostgreSQL (real processes, real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.storage.db import Database
from hub.storage.tables import Message, SpoolEntry
from tests.e2e.test_quickstart import HUB, wait_listening
from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[2]
SENDERS = 4
MAILS = 600
KILL_AFTER = 150  # 250s seen before the kill


def mail(index: int) -> bytes:
    return (f"From: Citizen {index % 40} <c{index % 40}@example.org>\r\n"
            f"To: help@city.example\r\nSubject: Broken streetlight {index}\r\n"
            f"Message-ID: <kill-{index}@example.org>\r\n"
            "Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
            f"The light at number {index} is out.\r\n").encode()


class Senders:
    """Threads that send their share of the mails, keep what got a 250, and go on to the next
    mail on any error (a dead server): what was not acknowledged is sent again later."""

    def __init__(self, port: int, indexes: list[int]) -> None:
        self.port = port
        self.indexes = indexes
        self.acked: set[int] = set()
        self.lock = threading.Lock()

    def run(self) -> None:
        shares = [self.indexes[i::SENDERS] for i in range(SENDERS)]
        threads = [threading.Thread(target=self._send, args=(share,)) for share in shares]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _send(self, share: list[int]) -> None:
        client: smtplib.SMTP | None = None
        for index in share:
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
                client.sendmail(f"c{index % 40}@example.org", ["help@city.example"], mail(index))
            except (OSError, smtplib.SMTPException):
                client = None
                continue
            with self.lock:
                self.acked.add(index)
        if client is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()


@pytest.fixture
def city(tmp_path: Path, db_url: str) -> Iterator[tuple[Path, dict[str, str], str]]:
    shutil.copytree(REPO / "routing_rules", tmp_path / "routing_rules")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_HTTP_PORT"] = str(free_port())
    env["HUB_SMTP_PORT"] = str(free_port())
    env["HUB_DATABASE_URL"] = db_url
    yield tmp_path, env, db_url


def serve(cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    with open(cwd / "serve.log", "a") as log:
        process = subprocess.Popen([*HUB, "serve"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                   stderr=log, text=True)
    try:
        wait_listening(process)
    except AssertionError:
        process.kill()
        raise AssertionError((cwd / "serve.log").read_text()[-2000:]) from None
    return process


async def stored(url: str) -> tuple[list[str], int]:
    """(provider id of every inbound message, spool items still pending)."""
    db = Database(url)
    try:
        async with db.read() as session:
            ids = list(await session.scalars(
                select(Message.provider_id).where(Message.direction == "inbound")))
            pending = await session.scalar(select(func.count()).select_from(SpoolEntry)
                                           .where(SpoolEntry.state == "pending"))
    finally:
        await db.dispose()
    return [str(i) for i in ids], int(pending or 0)


def kill_when_acked(process: subprocess.Popen[str], senders: Senders) -> None:
    deadline = time.monotonic() + 120
    while len(senders.acked) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def settled(url: str, expected: int) -> list[str]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ids, pending = asyncio.run(stored(url))
        if pending == 0 and len(set(ids)) >= expected:
            return ids
        time.sleep(0.3)
    raise AssertionError(f"not settled: {len(set(ids))} of {expected} stored, {pending} pending")


def test_sigkill_mid_run_loses_no_acknowledged_mail_and_stores_none_twice(
        city: tuple[Path, dict[str, str], str]) -> None:
    cwd, env, url = city
    port = int(env["HUB_SMTP_PORT"])
    first = serve(cwd, env)
    try:
        before = Senders(port, list(range(MAILS)))
        killer = threading.Thread(target=kill_when_acked, args=(first, before))
        killer.start()
        before.run()
        killer.join()
    finally:
        if first.poll() is None:
            first.kill()
    assert KILL_AFTER <= len(before.acked) < MAILS, "the kill did not land mid-run"

    second = serve(cwd, env)
    try:
        # Mail servers retry what got no 250, and sometimes what did (its 250 was lost).
        retried = sorted(set(range(MAILS)) - before.acked) + sorted(before.acked)[:50]
        after = Senders(port, retried)
        after.run()
        assert after.acked == set(retried), "the restarted hub refused mail"
        ids = settled(url, MAILS)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)

    assert len(ids) == len(set(ids)), "a mail was stored twice"
    stored_indexes = {int(i.split("@", 1)[0].lstrip("<").removeprefix("kill-")) for i in ids}
    assert before.acked <= stored_indexes, "an acknowledged mail was lost"
    assert stored_indexes == set(range(MAILS))
