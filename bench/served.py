"""Servers the benches start in child processes of their own: `hub serve` as shipped (its own
start-up, `hub.cli._serve`, with the work process it starts) and a bare stack to compare, each
in a spawned child whose output goes to a log file and which dies with the bench (Linux)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tests.support.http_standin import free_socket

PR_SET_PDEATHSIG = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _child_setup(log_path: str) -> None:
    """Output to `log_path`, and SIGTERM when the bench dies, however it dies (Linux)."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def hub_main(settings: Any, conn: Connection, log_path: str) -> None:
    """Child process: what `hub serve` runs (logging set up as `hub serve` sets it up); sends
    the addresses it listens on, stops on SIGTERM as `hub serve` does."""
    _child_setup(log_path)
    from hub.cli import _serve, configure_logging

    configure_logging(settings)
    asyncio.run(_serve(settings, ready=conn.send))


@dataclass
class Server:
    name: str
    pid: int
    url: str  # the base URL, plus the path the client posts to
    log: Path
    addresses: list[str] = field(default_factory=list)  # all it listens on
    answered: int = 0  # 200s, warm-up included

    def port(self, scheme: str) -> int:
        """The port of the first address with that scheme ("http", "smtp")."""
        for address in self.addresses:
            if address.startswith(f"{scheme}://"):
                return int(address.rsplit(":", 1)[1].rstrip("/"))
        raise LookupError(f"{self.name} listens on no {scheme} address: {self.addresses}")


@asynccontextmanager
async def child_server(name: str, target: Any, args: tuple[Any, ...], log: Path,
                       path: str = "") -> AsyncIterator[Server]:
    """`target(*args, conn, log)` in a spawned child (not daemonic: the hub has children of
    its own); waits for the addresses it sends, stops it with SIGTERM."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(*args, child, str(log)), name=f"bench-{name}")
    process.start()
    try:
        deadline = time.monotonic() + 180
        while not await asyncio.to_thread(parent.poll, 0.2):
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} server did not start; its log ends:\n"
                                   f"{log_tail(log)}")
        addresses = [str(a) for a in parent.recv()]
        yield Server(name, int(process.pid or 0), addresses[0].rstrip("/") + path, log,
                     addresses)
    finally:
        process.terminate()
        await asyncio.to_thread(process.join, 60)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 10)


def on_free_port(settings: Any) -> Any:
    """The settings with HTTP on a free local port (SMTP's port 0 is chosen by the hub)."""
    return settings.model_copy(update={"http": settings.http.model_copy(
        update={"host": "127.0.0.1", "port": free_port()})})


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def free_port() -> int:
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()  # `hub serve` binds its configured port itself
    return port


def _tree(root: int) -> list[tuple[int, list[str]]]:
    """(pid, /proc stat fields after the name) of `root` and its live descendants."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        stats[int(entry)] = fields
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found.append((pid, stats[pid]))
        todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants (the hub's work and parse
    processes)."""
    return sum((int(f[11]) + int(f[12])) / CLOCK_TICKS for _, f in _tree(root))


def rss_bytes(root: int) -> int:
    """Resident memory of `root` and its live descendants."""
    return sum(int(f[21]) * PAGE for _, f in _tree(root))


def rss_by_role(root: int) -> dict[str, int]:
    """Resident memory of `root` ("serve") and its live descendants by role: "work" (the work
    process), "other" (the parse process and its fork server)."""
    return _by_role(root, lambda fields: int(fields[21]) * PAGE)


def cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds (user + system) of `root` and its live descendants, by the roles of
    `rss_by_role`: where an intake's CPU goes."""
    return _by_role(root, lambda fields: (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)


def _by_role(root: int, measure: Callable[[list[str]], Any]) -> dict[str, Any]:
    roles: dict[str, Any] = {}
    for pid, fields in _tree(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            continue
        role = "serve" if pid == root else "work" if b"hub.workprocess" in command else "other"
        roles[role] = roles.get(role, 0) + measure(fields)
    return roles
