"""The web chat in a real headless Chromium (Debian's, through Playwright), embedded the way a
city site embeds it: a static page on another origin (a second small server, listed in
`[webchat] allowed_origins`) loads /chat/widget.js; the chat runs in the hub's iframe and talks
to the hub's WebSocket. Staff act through the staff API; "staff online" is a staff member
holding the live events socket (/api/v1/events) open, as the workspace does.

One hub, one browser and the site servers are shared by the module (fresh browser contexts keep
the visitors apart); the rule folder is a small one without calendars, so the queues are open
whatever the time. Slow (a browser): marked slow_e2e, so they run on SQLite unless --full.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import (
    Browser,
    BrowserContext,
    FilePayload,
    Frame,
    FrameLocator,
    Page,
    Route,
    WebSocketRoute,
    expect,
)
from sqlalchemy import func, select

from hub.adapters.webchat.inbound import WebchatAdapter
from hub.app import Hub, reply_secret
from hub.auth import create_token
from hub.config import Settings
from hub.events import Event
from hub.staff import add_staff
from hub.storage.tables import Message
from hub.web.app import create_app
from tests.support.adapter import RecordingAdapter
from tests.support.browser import chromium
from tests.web.citizen.citizen import PNG
from tests.web.staff.test_browser import axe_violations

pytestmark = [pytest.mark.slow_e2e, pytest.mark.asyncio(loop_scope="module")]
SHIPPED = Path(__file__).resolve().parents[3] / "routing_rules"
QUEUES = """
[[queue]]
name = "general"
title = "General enquiries"
strategy = "manual"

[[queue]]
name = "roads"
title = "Roads and sidewalks"
strategy = "manual"
"""
ROUTE = """
[[rule]]
id = "default"
phase = "route"
default = true
then.queue = "general"
"""
FRAME = "iframe[src*='/chat?embed=1']"  # the widget's frame (in its shadow root)
HOST_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>City of Example</title>
<style>button, iframe {{ background: #f00 !important; font-size: 40px; }}</style></head>
<body><main><h1>City of Example</h1><p><a href="/about">About the city</a></p></main>
<script src="{hub}/chat/widget.js" async></script></body></html>"""
FRAMING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not allowed</title></head>
<body><main><h1>Not allowed</h1>
<iframe title="chat" src="{hub}/chat?embed=1"></iframe></main></body></html>"""
# Playwright turns Chrome's third-party storage partitioning off; Chrome ships with it on, and
# then the chat's frame on a city site has its own localStorage (partitioned by the site).
# Without it this Chromium (third-party cookies blocked) denies the frame any storage: the chat
# still works, but a reload starts a fresh visitor. So: Playwright's list without that one.
PARTITIONED_STORAGE = ("--disable-features=AvoidUnnecessaryBeforeUnloadCheckSync,"
                       "DestroyProfileOnBrowserClose,HttpsUpgrades,"
                       "HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,"
                       "AvoidCorsURLLoaderRestartOnRedirect,OptimizationHints")
OPEN_SOCKET = """url => new Promise(done => {
  const ws = new WebSocket(url);
  ws.onopen = () => { done("open"); ws.close(); };
  ws.onerror = () => done("refused");
})"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class World:
    hub: Hub
    hub_url: str
    site: str  # an allowed origin that embeds the widget
    other: str  # an origin that is not allowed
    browser: Browser
    token: str
    http: aiohttp.ClientSession
    email: RecordingAdapter

    async def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.request(method, self.hub_url + path, json=body, headers={
                "Authorization": f"Bearer {self.token}"}) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def until_delivered(self, conversation_id: int) -> None:
        for _ in range(100):
            detail = await self.api("GET", f"/api/v1/conversations/{conversation_id}")
            statuses = [m["delivery_status"] for m in detail["messages"]
                        if m["direction"] == "outbound"]
            if statuses and set(statuses) == {"delivered"}:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the staff reply was never marked delivered: {statuses}")

    @asynccontextmanager
    async def staff_online(self) -> AsyncIterator[None]:
        """A staff member of every queue with a live workspace while inside."""
        async with self.http.ws_connect(self.hub_url + "/api/v1/events", headers={
                "Authorization": f"Bearer {self.token}"}) as socket_:
            first = await socket_.receive_json(timeout=5)
            assert first["kind"] == "ready"
            yield

    @asynccontextmanager
    async def visitor(self, lang: str = "en") -> AsyncIterator[tuple[BrowserContext, Page]]:
        context = await self.browser.new_context(locale=lang)
        page = await context.new_page()
        page.set_default_timeout(10_000)
        try:
            yield context, page
        finally:
            await context.close()

    async def conversation(self, reference: str) -> dict[str, Any]:
        listed = await self.api("GET", "/api/v1/conversations?channel=webchat&limit=100")
        found = [c for c in listed["items"] if c["reference"] == reference]
        assert len(found) == 1, listed
        detail: dict[str, Any] = await self.api("GET", f"/api/v1/conversations/{found[0]['id']}")
        return detail


def site_app(hub_url: str) -> web.Application:
    async def page(request: web.Request) -> web.Response:
        lang = request.query.get("lang", "en")
        return web.Response(text=HOST_PAGE.format(hub=hub_url, lang=lang),
                            content_type="text/html")

    async def framing(request: web.Request) -> web.Response:
        return web.Response(text=FRAMING_PAGE.format(hub=hub_url), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/framing", framing)
    return app


def chat_settings(tmp: Path, template: Path, hub_port: int, site: str) -> Settings:
    rules = tmp / "rules"
    (rules / "forms").mkdir(parents=True)
    (rules / "queues.toml").write_text(QUEUES)
    (rules / "20-route.toml").write_text(ROUTE)
    shutil.copy(SHIPPED / "forms" / "pothole.toml", rules / "forms")
    shutil.copy(template, tmp / "hub.db")
    return Settings.model_validate({
        "hub": {"data_dir": str(tmp / "data"), "secret_key": "test-secret",
                "public_url": f"http://127.0.0.1:{hub_port}"},
        "database": {"url": f"sqlite+aiosqlite:///{tmp / 'hub.db'}", "migrate_on_start": False},
        # email on (the chat's replies fall back to it), though no SMTP server is started
        "smtp": {"enabled": True, "port": free_port()},
        "email": {"acknowledge": False},
        "routing": {"rules_dir": str(rules), "watch": False, "default_queue": "general"},
        "outbox": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.2,
                   "sweep_interval_seconds": 0.1, "stale_after_seconds": 5},
        "webchat": {"allowed_origins": [site]},
    })


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory,
                sqlite_template: Path) -> AsyncIterator[World]:
    hub_port, site_port, other_port = free_port(), free_port(), free_port()
    hub_url = f"http://127.0.0.1:{hub_port}"
    site, other = f"http://localhost:{site_port}", f"http://localhost:{other_port}"
    settings = chat_settings(tmp_path_factory.mktemp("chat"), sqlite_template, hub_port, site)
    email = RecordingAdapter(name="email")
    hub = Hub(settings, adapters=[email, RecordingAdapter(name="sms"),
                                  WebchatAdapter(settings, reply_secret(settings))])
    await hub.prepare()
    servers = [TestServer(create_app(hub), host="127.0.0.1", port=hub_port),
               TestServer(site_app(hub_url), host="127.0.0.1", port=site_port),
               TestServer(site_app(hub_url), host="127.0.0.1", port=other_port)]
    for server in servers:
        await server.start_server()
    async with hub.db.transaction() as session:
        clerk = await add_staff(session, "clerk@city.example", name="Clara Clerk",
                                role="agent", queues=["general", "roads"])
        token = await create_token(session, clerk)
    try:
        async with chromium([PARTITIONED_STORAGE]) as browser, aiohttp.ClientSession() as http:
            yield World(hub, hub_url, site, other, browser, token, http, email)
    finally:
        for server in servers:
            await server.close()
        await hub.stop()


async def chat_frame(page: Page) -> Frame:
    """The widget's frame, once its page has loaded."""
    await expect(page.locator(FRAME)).to_be_visible()
    for _ in range(100):
        found = next((f for f in page.frames if "/chat?embed=1" in f.url), None)
        if found is not None:
            await found.wait_for_load_state()
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("the chat frame never loaded")


async def open_widget(world: World, page: Page, lang: str = "en") -> FrameLocator:
    await page.goto(f"{world.site}/?lang={lang}")
    await page.get_by_role("button", name="Chat with us" if lang == "en"
                           else "Chatee con nosotros").click()
    return page.frame_locator(FRAME)


async def start_chat(chat: FrameLocator, email: str = "jane@example.org") -> None:
    await expect(chat.locator("#prechat")).to_be_visible()
    await chat.locator("#p-name").fill("Jane Citizen")
    await chat.locator("#p-email").fill(email)
    await chat.locator("#p-topic").select_option("pothole")
    await chat.get_by_role("button", name="Start chat").click()
    await expect(chat.locator("#c-message")).to_be_focused()


async def send(chat: FrameLocator, text: str) -> None:
    await chat.locator("#c-message").fill(text)
    await chat.locator("#c-message").press("Enter")
    await expect(chat.locator("#c-message")).to_be_focused()
    await expect(chat.locator("#c-message")).to_have_value("")


async def reference_of(chat: FrameLocator) -> str:
    await expect(chat.locator("#chat-reference")).to_be_visible()
    text = await chat.locator("#chat-reference").inner_text()
    found = re.search(r"[A-Z0-9]{8,}", text)
    assert found, text
    return found.group(0)


async def stored_bodies(hub: Hub, body: str) -> int:
    async with hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Message).where(
            Message.body == body)) or 0)


async def test_embedded_chat_reply_reload_and_a_fresh_visitor(world: World) -> None:
    async with world.staff_online(), world.visitor() as (_, page):
        chat = await open_widget(world, page)
        await start_chat(chat)
        await send(chat, "Hello, there is a hole on Elm St")
        mine = chat.locator("#chat-log li.mine")
        await expect(mine).to_have_count(1)
        await expect(mine.locator(".meta")).to_contain_text("Sent")
        reference = await reference_of(chat)
        conversation = await world.conversation(reference)
        assert conversation["channel"] == "webchat"
        assert conversation["queue"] == "roads"  # the topic's form routes it
        assert {"channel": "email", "address": "jane@example.org"} in [
            {"channel": i["channel"], "address": i["address"]}
            for i in conversation["contact"]["identities"]]
        assert conversation["contact"]["name"] == "Jane Citizen"
        await world.api("POST", f"/api/v1/conversations/{conversation['id']}/replies",
                        {"body": "A crew is on its way."})
        theirs = chat.locator("#chat-log li.theirs")
        await expect(theirs).to_contain_text("A crew is on its way.")  # live, no reload
        await world.until_delivered(conversation["id"])  # the widget said `seen`
        await world.api("POST", f"/api/v1/conversations/{conversation['id']}/claim")
        await expect(chat.locator("#chat-log li.notice")).to_have_text(
            "Clara Clerk has joined the chat.")
        world.hub.events.publish(Event("staff.typing", conversation["id"], "roads",
                                       {"staff_id": 1, "name": "Clara Clerk", "on": True,
                                        "reply": True}))
        await expect(chat.locator("#chat-typing")).to_have_text("Clara Clerk is typing…")
        world.hub.events.publish(Event("staff.typing", conversation["id"], "roads",
                                       {"staff_id": 1, "name": "Clara Clerk", "on": False}))
        await expect(chat.locator("#chat-typing")).to_be_empty()

        await page.reload()
        chat = await open_widget(world, page)
        await expect(chat.locator("#conversation")).to_be_visible()
        await expect(chat.locator("#chat-log li.mine")).to_contain_text("hole on Elm St")
        await expect(chat.locator("#chat-log li.theirs")).to_contain_text("A crew is on its way.")
        assert await reference_of(chat) == reference
        await expect(chat.locator("#chat-log li:not(.notice)")).to_have_count(2)  # each once
        await expect(chat.locator("#chat-alert")).to_be_empty()

        async with world.visitor("es") as (_, stranger):  # on the site's Spanish page
            fresh = await open_widget(world, stranger, "es")
            await expect(fresh.locator("#prechat")).to_be_visible()
            await expect(fresh.locator("html")).to_have_attribute("lang", "es")
            await expect(fresh.locator("#prechat-heading")).to_have_text("Iniciar un chat")
            await expect(fresh.locator("#chat-log li")).to_have_count(0)


async def test_a_message_sent_offline_goes_on_reconnect_once(world: World) -> None:
    async with world.staff_online(), world.visitor() as (context, page):
        chat = await open_widget(world, page)
        await start_chat(chat, "offline@example.org")
        await send(chat, "First, while online")
        await expect(chat.locator("#chat-log li.mine .meta")).to_contain_text("Sent")
        await context.set_offline(True)
        await expect(chat.locator("#chat-state")).to_contain_text("offline")
        await send(chat, "Second, typed offline")
        pending = chat.locator("#chat-log li.mine").nth(1)
        await expect(pending.locator(".meta")).to_contain_text("Sending")
        await asyncio.sleep(0.5)
        assert await stored_bodies(world.hub, "Second, typed offline") == 0
        await context.set_offline(False)
        await expect(pending.locator(".meta")).to_contain_text("Sent", timeout=15_000)
        assert await stored_bodies(world.hub, "Second, typed offline") == 1
        await page.reload()  # nothing is left in the outbox to send again
        chat = await open_widget(world, page)
        await expect(chat.locator("#chat-log li.mine")).to_have_count(2)
        assert await stored_bodies(world.hub, "Second, typed offline") == 1
        # Over [webchat] max_body: said in words and kept in the box to shorten, never sent
        # (the server's own `too_long` is tested in tests/adapters/webchat).
        await chat.locator("#c-message").fill("x" * 2001)
        await chat.locator("#c-message").press("Enter")
        await expect(chat.locator("#chat-alert")).to_contain_text("too long")
        await expect(chat.locator("#chat-log li.mine")).to_have_count(2)
        assert await chat.locator("#c-message").input_value() == "x" * 2001
        assert await stored_bodies(world.hub, "x" * 2001) == 0


async def test_a_site_not_allowed_can_neither_frame_the_chat_nor_open_its_socket(
        world: World) -> None:
    async with world.http.get(world.hub_url + "/chat?embed=1") as response:
        policy = response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {world.site}" in policy and world.other not in policy
    socket_url = world.hub_url.replace("http:", "ws:") + "/chat/ws"
    async with world.visitor() as (_, page):
        await page.goto(f"{world.other}/framing")
        await asyncio.sleep(1)
        framed = [f for f in page.frames if f is not page.main_frame]
        assert len(framed) == 1
        loaded = await framed[0].evaluate("document.getElementById('chat') !== null")
        assert loaded is False, "the chat loaded inside a site that is not allowed"
        assert await page.evaluate(OPEN_SOCKET, socket_url) == "refused"
        await page.goto(f"{world.site}/")
        assert await page.evaluate(OPEN_SOCKET, socket_url) == "open"
    async with world.http.get(socket_url.replace("ws:", "http:"), headers={
            "Origin": world.other, "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            ) as refused:
        assert refused.status == 403


async def test_nobody_online_leave_a_message_by_email(world: World) -> None:
    async with world.visitor() as (_, page):
        chat = await open_widget(world, page)
        await expect(chat.locator("#leave")).to_be_visible()
        await expect(chat.locator("#leave-why")).to_contain_text("Nobody can chat right now")
        await expect(chat.locator("#prechat")).to_be_hidden()
        await chat.get_by_role("button", name="Send message").click()
        await asyncio.sleep(0.5)
        await expect(chat.locator("#chat-alert")).to_contain_text("Enter an email address")
        await chat.locator("#l-email").fill("leaver@example.org")
        await chat.locator("#l-message").fill("Please call me back about my permit")
        await chat.get_by_role("button", name="Send message").click()
        await expect(chat.locator("#left")).to_be_visible()
        await expect(chat.locator("#left")).to_be_focused()
        text = await chat.locator("#left-reference").inner_text()
        reference = re.search(r"[A-Z0-9]{8,}", text)
        assert reference, text
    conversation = await world.conversation(reference.group(0))
    assert ("email", "leaver@example.org") in [
        (i["channel"], i["address"]) for i in conversation["contact"]["identities"]]
    assert conversation["messages"][0]["body"] == "Please call me back about my permit"
    await world.api("POST", f"/api/v1/conversations/{conversation['id']}/replies",
                    {"body": "We will call you tomorrow."})
    for _ in range(100):  # the reply goes out by email: the citizen has left
        if any(m.to == "leaver@example.org" for m in world.email.sent):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"no email to the citizen: {world.email.sent}")


async def check_axe(target: Page | Frame, what: str) -> None:
    """axe-core on a page or a frame (the tool only evaluates scripts in it)."""
    assert await axe_violations(target) == [], what  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["en", "es"])
async def test_axe_finds_nothing_on_the_chat_page(world: World, lang: str) -> None:
    async with world.visitor(lang) as (_, page):
        await page.goto(f"{world.hub_url}/chat?lang={lang}")
        await expect(page.locator("html")).to_have_attribute("lang", lang)
        await expect(page.locator("#leave")).to_be_visible()
        await check_axe(page, "leave a message")
        await page.locator("#leave-form button[type=submit]").click()
        await expect(page.locator("#chat-alert")).not_to_be_empty()
        await check_axe(page, "leave a message, failed")
        async with world.staff_online():
            await page.reload()
            await expect(page.locator("#prechat")).to_be_visible()
            await check_axe(page, "pre-chat")
            await page.locator("#p-email").fill(f"axe-{lang}@example.org")
            await page.locator("#prechat-form button[type=submit]").click()
            await page.locator("#c-message").fill("<b>Hello</b> & welcome")
            await page.locator("#c-message").press("Enter")
            await expect(page.locator("#chat-log li.mine .body")).to_have_text(
                "<b>Hello</b> & welcome")  # text, never markup
            await expect(page.locator("#chat-log li.mine .meta")).not_to_contain_text(
                "Sending" if lang == "en" else "Enviando")
            await check_axe(page, "conversation")


async def test_the_widget_by_keyboard_alone_and_axe_on_the_host_page(world: World) -> None:
    async with world.staff_online(), world.visitor() as (_, page):
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        await page.goto(f"{world.site}/")
        for _ in range(10):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement?.shadowRoot?.activeElement"
                                   "?.className === 'launcher'"):
                break
        else:
            raise AssertionError("Tab never reached the launcher")
        launcher = page.get_by_role("button", name="Chat with us")
        await expect(launcher).to_have_attribute("aria-expanded", "false")
        color = await launcher.evaluate("b => getComputedStyle(b).backgroundColor")
        assert color != "rgb(255, 0, 0)"  # the site's CSS does not reach the widget
        assert len(page.frames) == 1  # nothing but the button until it is pressed
        assert [u for u in asked if u.startswith(world.hub_url)] == [
            f"{world.hub_url}/chat/widget.js"]
        await page.keyboard.press("Enter")
        frame = await chat_frame(page)
        await expect(page.locator(FRAME)).to_have_attribute("title", "Chat with City Hall")
        await expect(page.frame_locator(FRAME).locator("#p-name")).to_be_focused()
        await page.keyboard.type("Kim Keys")
        await page.keyboard.press("Tab")
        await page.keyboard.type("kim@example.org")
        for _ in range(3):  # phone, topic, start
            await page.keyboard.press("Tab")
        assert await frame.evaluate("document.activeElement.textContent") == "Start chat"
        await page.keyboard.press("Enter")
        assert await frame.evaluate("document.activeElement.id") == "c-message"
        await page.keyboard.type("Typed with the keyboard")
        await page.keyboard.press("Shift+Enter")
        await page.keyboard.type("on two lines")
        await page.keyboard.press("Enter")
        chat = page.frame_locator(FRAME)
        await expect(chat.locator("#chat-log li.mine .body")).to_have_text(
            "Typed with the keyboard\non two lines")
        await expect(chat.locator("#chat-log li.mine .meta")).to_contain_text("Sent")
        log = chat.get_by_role("log", name="Messages")  # what a screen reader is told
        await expect(log).to_have_attribute("aria-live", "polite")
        await expect(log.get_by_role("listitem")).to_contain_text("Typed with the keyboard")
        await check_axe(frame, "the chat in the widget")
        await check_axe(page, "the host page with the widget open")
        reach = ("document.querySelector('[data-hub-chat]').shadowRoot"
                 ".querySelector('iframe').contentDocument")
        assert await page.evaluate(f"{reach} === null")  # the site's scripts cannot read it
        await page.keyboard.press("Escape")
        await expect(page.locator(FRAME)).to_be_hidden()
        assert await page.evaluate("document.activeElement?.shadowRoot?.activeElement"
                                   "?.className") == "launcher"
        await expect(launcher).to_be_focused()


async def test_the_http_fallback_with_an_attachment_when_websockets_are_blocked(
        world: World) -> None:
    async def blocked(socket_: WebSocketRoute) -> None:  # a proxy that drops the upgrade
        await socket_.close(code=1011)

    async with world.staff_online(), world.visitor() as (context, page):
        await context.route_web_socket(re.compile(r".*/chat/ws$"), blocked)
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        await page.goto(f"{world.hub_url}/chat")
        await expect(page.locator("#prechat")).to_be_visible()
        await page.locator("#p-email").fill("fallback@example.org")
        await page.get_by_role("button", name="Start chat").click()
        await page.locator("#c-message").fill("Sent over plain HTTP")
        await page.locator("#c-message").press("Enter")
        await expect(page.locator("#chat-log li.mine .meta")).to_contain_text("Sent")
        await page.locator("#c-message").fill("A photo of it")
        photo_file: FilePayload = {"name": "hole.png", "mimeType": "image/png", "buffer": PNG}
        await page.set_input_files("#c-file", files=[photo_file])
        await page.get_by_role("button", name="Send", exact=True).click()
        photo = page.locator("#chat-log li.mine").nth(1)
        await expect(photo).to_contain_text("hole.png")
        await expect(photo.locator(".meta")).to_contain_text("Sent")
        await expect(page.locator("#c-message")).to_be_focused()
        conversation = await world.conversation(await page_reference(page))
        files = [a["filename"] for m in conversation["messages"] for a in m["attachments"]]
        assert files == ["hole.png"]
        await world.api("POST", f"/api/v1/conversations/{conversation['id']}/replies",
                        {"body": "Thanks for the photo."})
        await expect(page.locator("#chat-log li.theirs")).to_contain_text("Thanks for the photo.")
        paths = {url.split("?")[0].removeprefix(world.hub_url) for url in asked}
        assert {"/chat/api/hello", "/chat/api/messages", "/chat/api/attachments",
                "/chat/api/events"} <= paths


async def page_reference(page: Page) -> str:
    await expect(page.locator("#chat-reference")).to_be_visible()
    found = re.search(r"[A-Z0-9]{8,}", await page.locator("#chat-reference").inner_text())
    assert found
    return found.group(0)


async def test_with_the_chat_unreachable_a_message_still_gets_through(world: World) -> None:
    async def blocked(socket_: WebSocketRoute) -> None:
        await socket_.close(code=1011)

    async def cut(route: Route) -> None:
        await route.abort()

    async with world.visitor() as (context, page):
        await context.route_web_socket(re.compile(r".*/chat/ws$"), blocked)
        await context.route(re.compile(r".*/chat/api/.*"), cut)
        chat = await open_widget(world, page)
        await expect(chat.locator("#chat-state")).to_contain_text("Connection lost")
        await chat.locator("#l-email").fill("unreachable@example.org")
        await chat.locator("#l-message").fill("Nobody answers the phone")
        await chat.get_by_role("button", name="Send message").click()
        # in the site's frame the form's cookie is not sent: the citizen gets a window of ours
        await expect(chat.get_by_role("link", name="Open the chat in a new window")).to_be_focused()

        await page.goto(f"{world.hub_url}/chat")  # that window: the form posts by itself
        await expect(page.locator("#chat-state")).to_contain_text("Connection lost")
        await page.locator("#l-email").fill("unreachable@example.org")
        await page.locator("#l-message").fill("Nobody answers the phone")
        await page.get_by_role("button", name="Send message").click()
        await page.wait_for_url("**/track/*")
        await expect(page.locator(".timeline")).to_contain_text("Nobody answers the phone")
    assert await stored_bodies(world.hub, "Nobody answers the phone") == 1


async def test_replies_while_closed_show_on_the_launcher(world: World) -> None:
    """Replies that arrive while the widget is closed are counted in the launcher's name and
    said once by a polite status; the count comes by postMessage from the hub's frame only."""
    async with world.staff_online(), world.visitor() as (_, page):
        chat = await open_widget(world, page)
        await start_chat(chat, "badge@example.org")
        await send(chat, "Is the pool open today?")
        conversation = await world.conversation(await reference_of(chat))
        await page.get_by_role("button", name="Close the chat").click()
        await expect(page.locator(FRAME)).to_be_hidden()
        reply = f"/api/v1/conversations/{conversation['id']}/replies"
        await world.api("POST", reply, {"body": "Yes, until 8 pm."})
        launcher = page.get_by_role("button", name="Chat with us (1 new)")
        await expect(launcher).to_be_visible()
        await world.api("POST", reply, {"body": "And on Sundays too."})
        await expect(page.get_by_role("button", name="Chat with us (2 new)")).to_be_visible()
        await expect(page.get_by_role("status")).to_have_text("2 new messages in the chat")
        # Only the hub's own frame is heard: a script of the page cannot set the count.
        await page.evaluate("window.postMessage({type: 'hub-chat:unread', count: 7}, '*')")
        await page.wait_for_timeout(200)
        await expect(page.get_by_role("button", name="Chat with us (2 new)")).to_be_visible()
        await page.get_by_role("button", name="Chat with us (2 new)").click()
        await expect(page.frame_locator(FRAME).locator("#chat-log li.theirs")).to_have_count(2)
        await page.get_by_role("button", name="Close the chat").click()
        await expect(page.get_by_role("button", name="Chat with us", exact=True)).to_be_visible()
        await world.api("POST", reply, {"body": "Bring a towel."})  # counted afresh
        await expect(page.get_by_role("button", name="Chat with us (1 new)")).to_be_visible()


async def test_a_message_over_the_cap_is_refused_before_it_is_sent(world: World) -> None:
    """A pasted text far over `max_body` is refused in the page (kept to shorten), not sent:
    sent, the socket would be closed for the frame's size, and the outbox would resend it on
    every reconnect."""
    async with world.staff_online(), world.visitor() as (_, page):
        chat = await open_widget(world, page)
        await start_chat(chat, "long@example.org")
        await chat.locator("#c-message").fill("x" * 30_000)
        await chat.locator("#c-message").press("Enter")
        await expect(chat.locator("#chat-alert")).to_have_text(
            "Your message is too long: please keep it under 2000 characters.")
        await expect(chat.locator("#c-message")).to_be_focused()
        await expect(chat.locator("#chat-log li.mine")).to_have_count(0)
        assert await chat.locator("#c-message").input_value() == "x" * 30_000
        await send(chat, "A short one")
        await expect(chat.locator("#chat-log li.mine .meta")).to_contain_text("Sent")
        await expect(chat.locator("#chat-state")).to_be_empty()
