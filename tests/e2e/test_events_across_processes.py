"""Events cross processes: two `hub serve` and one `hub worker` (real processes) on PostgreSQL and
Redis. A live-events client connected to each serve process hears what any of the three raised:
a mail taken in by serve A, a reply posted on serve B, and the delivery that the worker made."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.e2e.test_quickstart import HUB, run, wait_listening
from tests.support.services import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


class Capture:
    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(envelope)
        return "250 OK"


@pytest.fixture
async def relay_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Capture(), loop=loop), "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


@pytest.fixture
def cluster(tmp_path: Path, db_url: str, redis_url: str,
            relay_port: int) -> Iterator[tuple[Path, dict[str, str], list[dict[str, int]]]]:
    config = tmp_path / "hub.toml"
    config.write_text(
        f'[hub]\nsecret_key = "cluster-secret"\npublic_url = "http://127.0.0.1"\n'
        f'[database]\nurl = "{db_url}"\n[redis]\nurl = "{redis_url}"\n'
        f'[smtp]\ndomains = ["city.example"]\n'
        f'[email]\nfrom = "City <help@city.example>"\nrelay_port = {relay_port}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_CONFIG"] = str(config)
    ports = [{"http": free_port(), "smtp": free_port()} for _ in range(2)]
    processes: list[subprocess.Popen[str]] = []
    try:
        for port in ports:
            process_env = {**env, "HUB_HTTP_PORT": str(port["http"]),
                           "HUB_SMTP_PORT": str(port["smtp"])}
            process = subprocess.Popen([*HUB, "serve"], cwd=tmp_path, env=process_env,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
            processes.append(process)
            wait_listening(process)
        processes.append(subprocess.Popen([*HUB, "worker"], cwd=tmp_path, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield tmp_path, env, ports
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


async def next_event(socket: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next event of `kind` (others are skipped); a time-out only stops a hung test."""
    while True:
        message = await asyncio.wait_for(socket.receive(), 60)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        event = json.loads(message.data)
        if event["kind"] == kind:
            return dict(event)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_event_raised_by_any_process_reaches_every_serve_process(
        cluster: tuple[Path, dict[str, str], list[dict[str, int]]]) -> None:
    cwd, env, ports = cluster
    await asyncio.to_thread(run, ["staff", "add", "sup@city.example", "--name", "Sup",
                                  "--role", "supervisor"], cwd, env)
    token = (await asyncio.to_thread(run, ["token", "create", "sup@city.example"], cwd, env)
             ).strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        sockets = [await http.ws_connect(f"http://127.0.0.1:{p['http']}/api/v1/events")
                   for p in ports]
        for socket in sockets:  # subscribed from here on
            assert (await next_event(socket, "ready"))["conversation_id"] is None

        # 1. Serve A takes a mail in; both serve processes' clients hear of it.
        mail = (b"From: Ana <ana@example.org>\r\nTo: help@city.example\r\nSubject: Pothole\r\n"
                b"Message-ID: <cluster-1@example.org>\r\n\r\nA pothole on Main St.\r\n")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ports[0]["smtp"]) as client:
            await client.sendmail("ana@example.org", ["help@city.example"], mail)
        inbound = [await next_event(s, "message.inbound") for s in sockets]
        assert inbound[0] == inbound[1] and inbound[0]["queue"] == "general"
        conversation_id = inbound[0]["conversation_id"]

        # 2. Serve B takes a staff reply; both hear of it.
        answer = await http.post(
            f"http://127.0.0.1:{ports[1]['http']}/api/v1/conversations/{conversation_id}/replies",
            json={"body": "We will fill it this week."})
        assert answer.status == 202, await answer.text()
        outbound = [await next_event(s, "message.outbound") for s in sockets]
        assert outbound[0]["conversation_id"] == outbound[1]["conversation_id"] == conversation_id

        # 3. The worker process delivers it; both hear the delivery status.
        delivered = [await next_event(s, "delivery.status") for s in sockets]
        assert {d["conversation_id"] for d in delivered} == {conversation_id}
        assert delivered[0]["queue"] == "general" and delivered[0]["status"] == "sent"
        for socket in sockets:
            await socket.close()
