"""The rules every citizen page passes: which paths are the citizen's, their headers, the
double-submit CSRF token, the per-address rate limit, and friendly error pages.

Citizens have no session, so a form carries a token that must equal the `hub_csrf` cookie set
when the form was shown (double submit); a POST without it is 403. Bots are kept off by a
hidden honeypot field (hub.web.citizen.pages) and a rate per client address
(`[security] citizen_rate_per_minute`, on form posts and tracking pages) instead of a CAPTCHA,
which fails WCAG. Any error on a citizen path (404, 405, 413, 429, 500...) is a page in the
citizen's language, never a stack trace.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web

from hub.web.addresses import client_key
from hub.web.auth_mw import RateLimiter
from hub.web.citizen import i18n
from hub.web.citizen.i18n import N_
from hub.web.html import PAGE_CSP, cookie_token, is_secure, same_token, set_page_headers
from hub.web.keys import HUB_KEY

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSRF_COOKIE = "hub_csrf"
STATIC_PREFIX = "/static/citizen/"
NOT_CITIZEN = ("/api/", "/webhooks/", "/metrics", "/healthz", "/staff", "/open311/")
LIMITER_KEY: web.AppKey[RateLimiter] = web.AppKey("citizen_rate_limiter", RateLimiter)
ERROR_TITLES = {
    400: N_("What you sent could not be read"),
    403: N_("This form has expired"),
    404: N_("Page not found"),
    405: N_("Page not found"),
    413: N_("What you sent is too large"),
    429: N_("Too many requests"),
    500: N_("Sorry, there is a problem with the service"),
}
ERROR_TEXTS = {
    400: N_("Go back, reload the page and try again."),
    403: N_("For your security, forms expire. Go back, reload the page and try again."),
    404: N_("If you typed the web address or a reference, check it is correct."),
    405: N_("If you typed the web address or a reference, check it is correct."),
    413: N_("Go back and choose smaller files."),
    429: N_("You have sent many requests in a short time. Wait a minute and try again."),
    500: N_("Try again in a few minutes."),
}


FORM_PERMISSIONS = "camera=(), microphone=(), geolocation=(self)"


def is_citizen_path(path: str) -> bool:
    return not path.startswith(NOT_CITIZEN)


async def citizen_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: page headers on every citizen response, errors too; tracking and
    survey pages are personal: never indexed."""
    if not is_citizen_path(request.path):
        return
    set_page_headers(response, cache=request.path.startswith(STATIC_PREFIX))
    if request.path.startswith("/forms/"):  # "Use my location" (static/citizen/location.js)
        response.headers["Permissions-Policy"] = FORM_PERMISSIONS
        tiles = request.app[HUB_KEY].settings.citizen.tiles_origin
        if tiles:  # the pin map's tiles come from the city's own tile server
            response.headers["Content-Security-Policy"] = PAGE_CSP.replace(
                "img-src 'self'", f"img-src 'self' {tiles}")
    if request.path.startswith(("/track", "/survey")):
        response.headers["X-Robots-Tag"] = "noindex, nofollow"


def install(app: web.Application) -> None:
    app[LIMITER_KEY] = RateLimiter(app[HUB_KEY].settings.security.citizen_rate_per_minute)
    app.on_response_prepare.append(citizen_headers)


def rate_limit(request: web.Request) -> None:
    wait = request.app[LIMITER_KEY].take(client_key(request))
    if wait > 0:
        raise web.HTTPTooManyRequests(headers={"Retry-After": str(max(1, math.ceil(wait)))})


def csrf_token(request: web.Request) -> tuple[str, bool]:
    return cookie_token(request, CSRF_COOKIE)


def set_csrf_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, path="/", httponly=True, samesite="Lax",
                        secure=is_secure(request))


def check_csrf(request: web.Request, sent: str) -> None:
    if not same_token(sent, request.cookies.get(CSRF_COOKIE, "")):
        raise web.HTTPForbidden()


def error_page(request: web.Request, status: int,
               headers: dict[str, str] | None = None) -> web.Response:
    language = i18n.choose(request)
    shown = status if status in ERROR_TITLES else 500 if status >= 500 else 400
    page = aiohttp_jinja2.render_template("citizen/error.html", request, {
        **page_context(request, language),
        "title": language._(ERROR_TITLES[shown]), "message": language._(ERROR_TEXTS[shown]),
    }, status=status)
    for name, value in (headers or {}).items():
        page.headers[name] = value
    return page


def page_context(request: web.Request, language: i18n.Language) -> dict[str, object]:
    """What every citizen page shows: the language, its texts and the language switcher."""
    links = []
    for code in i18n.offered(request):
        query = {**request.query, i18n.LANG_PARAM: code}
        links.append({"code": code, "name": i18n.native_name(code),
                      "href": str(request.rel_url.with_query(query)),
                      "current": code == language.code})
    settings = request.app[HUB_KEY].settings
    return {"lang": language.code, "_": language._, "languages": links,
            "transparency": settings.transparency.enabled,
            "citizen_map": settings.citizen if settings.citizen.map_tiles_url else None}


@web.middleware
async def citizen_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_citizen_path(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k.lower() in ("retry-after", "allow")}
        return error_page(request, exc.status, kept)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(request, 500)
