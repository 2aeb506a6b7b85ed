"""Embedded mode's work process (hub.workprocess), with real processes (on both databases with
`--full`):
`hub serve` starts one child that works the spool and delivers, at a lower priority; mail that
`hub serve` acknowledged is worked there; `/metrics` shows both processes' counts; a child that
dies is started again and the mail goes on; a `hub serve` killed with SIGKILL, or whose start
fails after the child was launched, leaves no child behind."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from hub.cli import ListenError, _serve
from hub.config import Settings
from hub.workprocess import WorkProcess
from tests.e2e.test_sigkill import city, serve, settled  # noqa: F401  (city: a fixture)

pytestmark = pytest.mark.slow_e2e  # on one backend unless --full

MAIL = ("From: Citizen <c1@example.org>\r\nTo: help@city.example\r\nSubject: Streetlight {n}\r\n"
        "Message-ID: <work-{n}@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
        "The light at number {n} is out.\r\n")


def children(pid: int) -> list[int]:
    """Live work processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == pid and b"hub.workprocess" in command:
            found.append(int(entry.name))
    return found


def one_child(pid: int, other_than: int = 0) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [child for child in children(pid) if child != other_than]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError("no work process")


def send(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("c1@example.org", ["help@city.example"], MAIL.format(n=n).encode())


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def test_the_work_process_works_what_serve_acknowledged_and_comes_back_if_it_dies(
        city: tuple[Path, dict[str, str], str]) -> None:  # noqa: F811
    cwd, env, url = city
    smtp_port, http_port = int(env["HUB_SMTP_PORT"]), int(env["HUB_HTTP_PORT"])
    process = serve(cwd, env)
    try:
        send(smtp_port, 1)  # answered while the child may still be coming up
        assert len(settled(url, 1)) == 1
        child = one_child(process.pid)
        assert os.getpriority(os.PRIO_PROCESS, child) > os.getpriority(os.PRIO_PROCESS,
                                                                       process.pid)
        # Stored by the child, counted there, and shown by the serving process's /metrics.
        assert 'hub_inbound_messages_total{channel="email"} 1.0' in metrics(http_port)

        os.kill(child, signal.SIGKILL)
        again = one_child(process.pid, other_than=child)
        send(smtp_port, 2)
        assert sorted(i.split("|")[0] for i in settled(url, 2)) == ["work-1@example.org",
                                                                "work-2@example.org"]
        assert "ended (exit code -9); starting it again" in (cwd / "serve.log").read_text()

        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{again}").exists() and time.monotonic() < deadline:
            with open(f"/proc/{again}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)
        assert not children(process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def test_metrics_show_the_spool_worked_by_the_child_as_no_longer_pending(
        city: tuple[Path, dict[str, str], str]) -> None:  # noqa: F811
    # `hub serve` counted the item when it spooled it; the child's reports bring it back down.
    cwd, env, url = city
    smtp_port, http_port = int(env["HUB_SMTP_PORT"]), int(env["HUB_HTTP_PORT"])
    process = serve(cwd, env)
    try:
        send(smtp_port, 1)
        assert len(settled(url, 1)) == 1
        deadline = time.monotonic() + 10
        while "hub_spool_pending 0.0" not in metrics(http_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "hub_spool_pending 0.0" in metrics(http_port)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def test_a_start_that_fails_after_the_child_was_launched_ends_the_child(
        settings_data: dict[str, dict[str, object]], monkeypatch: pytest.MonkeyPatch) -> None:
    # The child is launched first, to import while `hub serve` migrates and reads its rules.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    settings_data["http"] = {"host": "127.0.0.1", "port": taken.getsockname()[1]}
    settings_data["database"]["migrate_on_start"] = True
    launched: list[WorkProcess] = []
    launch = WorkProcess.launch

    async def spy(self: WorkProcess) -> None:
        launched.append(self)
        await launch(self)

    monkeypatch.setattr(WorkProcess, "launch", spy)
    try:
        with pytest.raises(ListenError, match=r"http\.port"):
            await _serve(Settings.model_validate(settings_data))
    finally:
        taken.close()
    (work,) = launched
    assert work._process is not None and work._process.returncode is not None
