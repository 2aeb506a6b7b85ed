"""What the hub's HTML pages share, staff workspace and citizen pages alike: the Jinja setup
(templates in hub/web/templates, autoescape on), the headers of every page (a strict
Content-Security-Policy among them) and the double-submit CSRF token of a form that has no
session behind it (staff sign-in, every citizen form).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from hub.web.keys import HUB_KEY

WEB = Path(__file__).resolve().parent
CSRF_FIELD = "csrf"
# no inline script or style anywhere; nothing from another origin; never framed
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "font-src 'self'; connect-src 'self'; frame-src 'none'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def setup_templates(app: web.Application) -> None:
    """aiohttp-jinja2 on `app`, reading hub/web/templates; whatever a citizen wrote is text."""
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(WEB / "templates"),
                         autoescape=True, undefined=jinja2.StrictUndefined)


def set_page_headers(response: web.StreamResponse, *, cache: bool = False,
                     extra: Mapping[str, str] | None = None) -> None:
    for name, value in {**PAGE_HEADERS, **(extra or {})}.items():
        response.headers[name] = value
    if not cache:
        response.headers["Cache-Control"] = "no-store"  # personal data: never kept


def is_secure(request: web.Request) -> bool:
    return request.app[HUB_KEY].settings.hub.public_url.scheme == "https"


def cookie_token(request: web.Request, cookie: str) -> tuple[str, bool]:
    """A double-submit token: the one `cookie` holds, or a new one (True: set the cookie)."""
    token = request.cookies.get(cookie, "")
    if 20 <= len(token) <= 64:
        return token, False
    return secrets.token_urlsafe(24), True


def same_token(sent: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())
