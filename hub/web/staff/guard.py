"""Who is using the workspace, and the rules every workspace request passes: the session cookie,
the CSRF check on every state-changing request, and the headers of every page (a strict
Content-Security-Policy among them).

A page without a live session redirects to the login page; any other request without one is
403. A POST, PUT, PATCH or DELETE must carry the session's CSRF token, as the form field `csrf`
or the header `X-CSRF-Token`, else 403. The login form, which has no session yet, carries a
token that must equal its own cookie (double submit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from hub.service import NotFound
from hub.storage.tables import Staff
from hub.web.html import (
    CSRF_FIELD,
    PAGE_CSP,
    cookie_token,
    is_secure,
    same_token,
    set_page_headers,
)
from hub.web.keys import HUB_KEY
from hub.web.staff import i18n, sessions
from hub.web.staff.sessions import SignedIn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
Read = Callable[[AsyncSession, Staff], Awaitable[T]]

PREFIX = "/staff"
LOGIN = f"{PREFIX}/login"
SESSION_COOKIE = "hub_session"
LOGIN_CSRF_COOKIE = "hub_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({LOGIN})
OWN_HEADERS = ("Content-Security-Policy", "X-Frame-Options")
STAFF_CSP = PAGE_CSP.replace("frame-src 'none'", "frame-src 'self'")
SIGNED_IN_KEY: web.RequestKey[SignedIn] = web.RequestKey("staff_session", SignedIn)


def signed_in(request: web.Request) -> SignedIn:
    return request[SIGNED_IN_KEY]


async def visible(request: web.Request, read: Read[T]) -> T:
    """`read` for the signed-in staff member in one read transaction; what hub.service says
    they may not see (NotFound) is a 404."""
    async with request.app[HUB_KEY].db.read() as session:
        try:
            return await read(session, signed_in(request).staff)
        except NotFound:
            raise web.HTTPNotFound() from None


def is_page_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


async def page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the workspace's headers on each of its responses, errors too. A
    response that set its own CSP or X-Frame-Options (an email's HTML, an attachment) keeps
    them; pages may frame the workspace's own documents (the email HTML), nothing else."""
    if not is_page_path(request.path):
        return
    own = {name: response.headers[name] for name in OWN_HEADERS if name in response.headers}
    set_page_headers(response, cache=request.path.startswith(f"{PREFIX}/static/"),
                     extra={"Content-Security-Policy": STAFF_CSP, **own})


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    hours = request.app[HUB_KEY].settings.security.session_hours
    response.set_cookie(SESSION_COOKIE, token, max_age=hours * 3600, path=PREFIX,
                        httponly=True, secure=is_secure(request), samesite="Lax")


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path=PREFIX)


def login_csrf(request: web.Request) -> tuple[str, bool]:
    """The login form's token: the one its cookie holds, or a new one (True: set the cookie)."""
    return cookie_token(request, LOGIN_CSRF_COOKIE)


def set_login_csrf_cookie(request: web.Request, response: web.StreamResponse,
                          token: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path=LOGIN, httponly=True,
                        secure=is_secure(request), samesite="Strict")


async def _sent_token(request: web.Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def forbidden(request: web.Request, message: str) -> web.Response:
    return aiohttp_jinja2.render_template("staff/error.html", request,
                                          {"title": "Not allowed", "message": message},
                                          status=403)


@web.middleware
async def staff_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == PREFIX:
        raise web.HTTPSeeOther(f"{PREFIX}/")
    if request.path.startswith(f"{PREFIX}/static/"):
        return await handler(request)
    i18n.before_sign_in(request)
    if request.path in PUBLIC_PATHS:
        if request.method not in SAFE_METHODS and not same_token(
                await _sent_token(request), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
            return forbidden(request, "The form had expired. Reload the page and try again.")
        return await handler(request)
    who = await sessions.find(request.app[HUB_KEY].db, request.cookies.get(SESSION_COOKIE, ""))
    if who is None:
        if request.method in SAFE_METHODS:
            raise web.HTTPSeeOther(LOGIN)
        return forbidden(request, "You are not signed in. Sign in and try again.")
    if request.method not in SAFE_METHODS and not same_token(await _sent_token(request),
                                                         who.csrf_token):
        return forbidden(request, "This request did not carry its security token. "
                                  "Reload the page and try again.")
    request[SIGNED_IN_KEY] = who
    i18n.use(request, i18n.for_staff(request, who.staff))
    return await handler(request)
