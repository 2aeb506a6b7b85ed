"""The workspace's sign-in and the rules every workspace request passes, over HTTP (no browser):
the session cookie, logout and password changes ending sessions, the lockout, CSRF, the page
headers, and an old scrypt password still signing in (upgraded to argon2)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from hub.app import Hub
from hub.auth import set_password, verify_password
from hub.events import Event
from hub.model import utcnow
from hub.staff import find_staff
from hub.storage.tables import LoginFailure, Message, Staff, WebSession
from tests.web.staff.desk import AGENT, PASSWORD, Desk, csrf_of, sign_in

# what hub.auth stored before argon2, for "old password 1"
LEGACY_SCRYPT = ("scrypt$AAECAwQFBgcICQoLDA0ODw==$"
                 "iz9xSjF9miDr/Nuc34lUzFd5Gv/0PbVs2At27uTpcss=")


@pytest.fixture
def public_url() -> str:
    return "http://127.0.0.1:8080"


@pytest.fixture
def settings_data(settings_data: dict[str, dict[str, object]],
                  public_url: str) -> dict[str, dict[str, object]]:
    settings_data["hub"]["public_url"] = public_url
    settings_data["security"] = {"max_login_attempts": 10, "session_hours": 2}
    return settings_data


def _session_cookie(response: object) -> str:
    header = ";".join(v for k, v in response.headers.items()  # type: ignore[attr-defined]
                      if k.lower() == "set-cookie" and v.startswith("hub_session="))
    assert header, "no session cookie was set"
    return header


async def _login(client: TestClient, email: str, password: str) -> tuple[int, str]:
    page = await client.get("/staff/login")
    response = await client.post("/staff/login", allow_redirects=False, data={
        "email": email, "password": password, "csrf": csrf_of(await page.text())})
    return response.status, await response.text()


async def test_signing_in_gives_an_httponly_lax_session(client: TestClient, desk: Desk) -> None:
    page = await client.get("/staff/login")
    response = await client.post("/staff/login", allow_redirects=False, data={
        "email": "Agent@City.example ", "password": PASSWORD, "csrf": csrf_of(await page.text())})
    assert response.status == 303 and response.headers["Location"] == "/staff/"
    cookie = _session_cookie(response).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    assert "max-age=7200" in cookie and "path=/staff" in cookie
    workspace = await client.get("/staff/")
    html = await workspace.text()
    assert workspace.status == 200 and "Alex Agent" in html
    assert "1 open, 1 unassigned, 0 mine" in html  # the sidebar's roads
    assert "Taxes" not in html  # not their queue


@pytest.mark.parametrize("public_url", ["https://hub.city.example"])
async def test_the_cookie_is_secure_behind_https(client: TestClient, desk: Desk) -> None:
    page = await client.get("/staff/login")
    login_cookie = page.cookies["hub_login_csrf"]
    assert login_cookie["secure"]  # a browser sends it back over https only: given here by hand
    response = await client.post("/staff/login", allow_redirects=False, data={
        "email": AGENT, "password": PASSWORD, "csrf": csrf_of(await page.text())},
        cookies={"hub_login_csrf": login_cookie.value})
    assert "secure" in _session_cookie(response).lower()


async def test_without_a_session_pages_redirect_and_posts_are_refused(
        client: TestClient, desk: Desk) -> None:
    bare = await client.get("/staff", allow_redirects=False)
    assert bare.status == 303 and bare.headers["Location"] == "/staff/"
    for path in ("/staff/", f"/staff/conversations/{desk.conv}",
                 f"/staff/conversations/{desk.conv}/timeline", "/staff/events"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"] == "/staff/login"
    response = await client.post(f"/staff/conversations/{desk.conv}/reply",
                                 data={"body": "hi", "csrf": "x"})
    assert response.status == 403


async def test_a_change_without_the_csrf_token_is_403(client: TestClient, desk: Desk,
                                                       hub: Hub) -> None:
    token = await sign_in(client)
    url = f"/staff/conversations/{desk.conv}/reply"
    for data in ({"body": "no token"}, {"body": "wrong token", "csrf": token[:-2] + "xx"}):
        response = await client.post(url, data=data)
        assert response.status == 403
        assert "security token" in await response.text()
    response = await client.post(url, headers={"X-CSRF-Token": "nope"}, json={"body": "x"})
    assert response.status == 403
    async with hub.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Message).where(
            Message.conversation_id == desk.conv)) == 1
    ok = await client.post(url, data={"body": "Crew is on the way", "csrf": token,
                                      "channel": "email"}, allow_redirects=False)
    assert ok.status == 303
    refused_login = await client.post("/staff/login", data={"email": AGENT,
                                                            "password": PASSWORD})
    assert refused_login.status == 403


async def test_logout_ends_the_session_for_good(client: TestClient, desk: Desk,
                                                hub: Hub) -> None:
    token = await sign_in(client)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/staff/"))["hub_session"]
    response = await client.post("/staff/logout", data={"csrf": token}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/staff/login"
    async with hub.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(WebSession)) == 0
    replay = await client.get("/staff/", allow_redirects=False,
                              cookies={"hub_session": cookie.value})
    assert replay.status == 303 and replay.headers["Location"] == "/staff/login"


async def test_a_session_ends_after_its_hours(client: TestClient, desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    async with hub.db.transaction() as session:
        await session.execute(update(WebSession).values(
            expires_at=utcnow() - timedelta(seconds=1)))
    response = await client.get("/staff/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/staff/login"


async def test_a_new_password_ends_every_session(client: TestClient, desk: Desk,
                                                 hub: Hub) -> None:
    await sign_in(client)
    async with hub.db.transaction() as session:
        staff = await find_staff(session, AGENT)
        assert staff is not None
        await set_password(session, staff, "another password 2")
    response = await client.get("/staff/", allow_redirects=False)
    assert response.status == 303
    assert (await _login(client, AGENT, PASSWORD))[0] == 401
    assert (await _login(client, AGENT, "another password 2"))[0] == 303


async def test_the_eleventh_wrong_password_finds_the_account_locked(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    for _ in range(10):
        status, html = await _login(client, AGENT, "wrong password")
        assert status == 401 and "The email or the password is wrong." in html
    status, html = await _login(client, AGENT, PASSWORD)  # even the right one, now
    assert status == 429 and "This account is locked after too many wrong passwords" in html
    assert "hub_session" not in client.session.cookie_jar.filter_cookies(
        client.make_url("/staff/"))
    async with hub.db.transaction() as session:  # an administrator sets a new password
        staff = await find_staff(session, AGENT)
        assert staff is not None
        await set_password(session, staff, PASSWORD)
    assert (await _login(client, AGENT, PASSWORD))[0] == 303
    async with hub.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(LoginFailure)) == 0


async def test_unknown_emails_are_counted_and_answered_alike(client: TestClient,
                                                             desk: Desk) -> None:
    status, html = await _login(client, "nobody@city.example", "whatever")
    assert status == 401 and "The email or the password is wrong." in html


async def test_an_old_scrypt_password_signs_in_and_becomes_argon2(
        client: TestClient, desk: Desk, hub: Hub) -> None:
    async with hub.db.transaction() as session:
        staff = await find_staff(session, AGENT)
        assert staff is not None
        staff.password_hash = LEGACY_SCRYPT
    assert verify_password(LEGACY_SCRYPT, "old password 1")
    assert (await _login(client, AGENT, "old password 1"))[0] == 303
    async with hub.db.read() as session:
        stored = await session.scalar(select(Staff.password_hash).where(Staff.email == AGENT))
    assert stored is not None and stored.startswith("$argon2id$")
    assert verify_password(stored, "old password 1")


async def test_every_page_carries_a_strict_policy(client: TestClient, desk: Desk) -> None:
    await sign_in(client)
    for path in ("/staff/login", "/staff/", f"/staff/conversations/{desk.conv}",
                 "/staff/no-such-page", f"/staff/conversations/{desk.outsider_conv}"):
        response = await client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["Cache-Control"] == "no-store"
    assert (await client.get(f"/staff/conversations/{desk.outsider_conv}")).status == 404


async def test_live_events_take_the_session_and_only_from_our_pages(client: TestClient,
                                                                   desk: Desk, hub: Hub) -> None:
    await sign_in(client)
    foreign = await client.get("/staff/events", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://evil.example"})
    assert foreign.status == 403
    socket = await client.ws_connect("/staff/events",
                                     headers={"Origin": str(client.make_url("/"))[:-1]})
    assert (await socket.receive_json(timeout=10))["kind"] == "ready"
    hub.events.publish(Event("conversation.updated", desk.outsider_conv, "taxes", {}))
    hub.events.publish(Event("conversation.updated", desk.conv, "roads", {}))
    heard = await socket.receive_json(timeout=10)
    assert (heard["conversation_id"], heard["queue"]) == (desk.conv, "roads")
    await socket.close()


def test_scrypt_hashes_of_other_shapes_are_refused() -> None:
    assert not verify_password("scrypt$broken", "x")
    assert not verify_password("not a hash", "x")
    assert not verify_password(None, "x")
