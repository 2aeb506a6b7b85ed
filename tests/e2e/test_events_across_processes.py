"""Events cross processes: two `hub serve` and one `hub worker` (real processes) on PostgreSQL and
Redis. A live-events client connected to each serve process hears what any of the three raised:
a mail taken in by serve A, a reply posted on serve B, and the delivery that the worker made.
In real browsers (slow_e2e: with --full), two agents' workspaces on the two serve processes see
a new conversation and each other's presence live."""

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

PASSWORD = "correct horse battery"

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


async def _signed_in(browser: Any, port: int, email: str) -> Any:
    """A browser context of its own, signed in to the serve process on `port`."""
    context = await browser.new_context(base_url=f"http://127.0.0.1:{port}")
    page = await context.new_page()
    page.set_default_timeout(30_000)
    await page.goto("/staff/login")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url("**/staff/")
    return page


@pytest.mark.slow_e2e
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_workspaces_on_two_serve_processes_see_each_other_live(
        cluster: tuple[Path, dict[str, str], list[dict[str, int]]]) -> None:
    """Agent A's workspace on serve 1 sees a conversation that arrived through serve 2, and
    agent B viewing it from serve 2, without a reload."""
    from playwright.async_api import expect

    from tests.support.browser import chromium

    cwd, env, ports = cluster
    for email, name in (("ana@city.example", "Ana Agent"), ("ben@city.example", "Ben Agent")):
        await asyncio.to_thread(run, ["staff", "add", email, "--name", name, "--role", "agent",
                                      "--queues", "general", "--password-stdin"], cwd, env,
                                PASSWORD + "\n")
    async with chromium() as browser:
        ana = await _signed_in(browser, ports[0]["http"], "ana@city.example")
        ben = await _signed_in(browser, ports[1]["http"], "ben@city.example")
        await ana.goto("/staff/?queue=general")
        await expect(ana.locator("html")).to_have_attribute("data-live", "ready")
        await ana.evaluate("window.stillTheSamePage = true")
        mail = (b"From: Eve <eve@example.org>\r\nTo: help@city.example\r\n"
                b"Subject: Broken swing\r\nMessage-ID: <cluster-2@example.org>\r\n\r\n"
                b"The swing in the park is broken.\r\n")
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=ports[1]["smtp"]) as client:
            await client.sendmail("eve@example.org", ["help@city.example"], mail)
        arrived = ana.locator("#listing a.subject", has_text="Broken swing")
        await expect(arrived).to_be_visible()
        assert await ana.evaluate("window.stillTheSamePage === true")
        await arrived.click()
        await expect(ana.locator("html")).to_have_attribute("data-live", "ready")
        await ana.evaluate("window.stillTheSamePage = true")
        await ben.goto(ana.url.replace(str(ports[0]["http"]), str(ports[1]["http"])))
        await expect(ana.locator("#collision")).to_have_text("Ben Agent is viewing")
        await expect(ben.locator("#collision")).to_have_text("Ana Agent is viewing")
        await ben.locator("#reply-body").press_sequentially("On my way")
        await expect(ana.locator("#collision")).to_have_text("Ben Agent is typing")
        assert await ana.evaluate("window.stillTheSamePage === true")
