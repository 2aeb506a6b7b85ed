"""The web chat's pages, the citizen side: `GET /chat` (the chat page, a full page or, with
`?embed=1`, the inside of the widget's frame), `POST /chat` (leave a message without JavaScript),
`GET /chat/widget.js` (the script a city site embeds) and the headers that make `/chat` the one
page other sites may frame.

The live part (WebSocket `/chat/ws`, the HTTP fallback `/chat/api/*`, visitor tokens, acks) is
the webchat adapter's (`hub.adapters.webchat`); the page's script (hub/web/static/chat) speaks its
protocol. Without JavaScript the page is a plain leave-a-message form: CSRF double submit like
every citizen form, a honeypot, the client address's rate, and a form token that makes a double
submit one message. It hands the message to the intake as a `webchat` message of a fresh visitor
(the citizen's email or phone as extra identities) and ends on the tracking page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from hub.adapters.webchat.history import FILES_PATH
from hub.adapters.webchat.normalize import Topic, to_inbound
from hub.adapters.webchat.protocol import ChatMessage, Profile
from hub.config import WebchatSection
from hub.forms.submit import TOKEN_RE
from hub.identities import InvalidAddress, normalize_email, normalize_phone
from hub.model import InboundMessage
from hub.web.citizen import i18n
from hub.web.citizen.guard import check_csrf, rate_limit
from hub.web.citizen.i18n import N_
from hub.web.citizen.pages import HONEYPOT, forms_of, phone_region, with_csrf
from hub.web.html import PAGE_CSP, WEB
from hub.web.keys import HUB_KEY

STATIC_PREFIX = "/static/chat/"
WIDGET = WEB / "static" / "chat" / "widget.js"
CONSENT = N_("We keep what you write, and the contact details you give, to answer you. "
             "Do not share passwords or bank details.")
# What the page's script shows; sent with the page in its language (no catalog in the browser).
TEXTS = {
    "connecting": N_("Connecting…"),
    "offline": N_("You are offline. Your messages will be sent when the connection is back."),
    "reconnecting": N_("Connection lost. Trying again…"),
    "nobody": N_("Nobody can chat right now. Leave a message and we will answer you by email "
                 "or text message."),
    "closed_hours": N_("The chat is closed at this time. Leave a message and we will answer you "
                       "by email or text message."),
    "you": N_("You"),
    "staff": N_("City Hall"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "joined": N_("{author} has joined the chat."),
    "typing": N_("{author} is typing…"),
    "reference": N_("Reference: {reference}"),
    "left_reference": N_("Your reference is {reference}."),
    "track": N_("Follow your request"),
    "need_contact": N_("Enter an email address or a phone number"),
    "need_message": N_("Enter your message"),
    "file_failed": N_("The file could not be sent. Choose an image or a PDF that is not too large."),
    "attachment": N_("Attachment"),
    "error": N_("Something went wrong. Try again."),
    # checked before sending too: a frame far over the cap would only close the socket
    "too_long": N_("Your message is too long: please keep it under {max} characters."),
}
CONTACT = (("l-email", "email", "email", "email", N_("Email address")),
           ("l-phone", "phone", "tel", "tel", N_("Phone number")))


@dataclass(slots=True)
class LeftMessage:
    """What the leave-a-message form sent, as typed, with its problems by field id."""

    name: str
    email: str
    phone: str
    topic: str
    message: str
    errors: dict[str, str]


def webchat_settings(request: web.Request) -> WebchatSection:
    # config_dict: the headers hook also sees responses of sub-applications (Open311).
    return request.config_dict[HUB_KEY].settings.webchat


def allowed_origins(request: web.Request) -> tuple[str, ...]:
    return webchat_settings(request).allowed_origins


def _enabled(request: web.Request) -> None:
    if not webchat_settings(request).enabled:
        raise web.HTTPNotFound()


def parent_origin(request: web.Request) -> str:
    """The site the widget says embeds the frame (`?host=`), when it is an allowed one: the
    only origin the frame posts its unread count to ("" for any other: it posts nothing)."""
    host = request.query.get("host", "").strip().lower()
    return host if host in allowed_origins(request) else ""


def consent_text(request: web.Request, language: i18n.Language) -> str:
    return webchat_settings(request).consent_text or language._(CONSENT)


def _topics(request: web.Request, language: i18n.Language) -> list[dict[str, str]]:
    return [{"id": form.id, "title": form.text(form.title, language.code)}
            for form in forms_of(request).values()]


def _page(request: web.Request, language: i18n.Language, left: LeftMessage | None = None,
          status: int = 200) -> web.Response:
    left = left or LeftMessage("", "", "", "", "", {})
    contact = [{"id": fid, "name": name, "type": kind, "autocomplete": auto,
                "label": language._(label), "value": getattr(left, name),
                "error": left.errors.get(fid, "")} for fid, name, kind, auto, label in CONTACT]
    summary = [(fid, text) for fid, text in left.errors.items()]
    title = language._("Chat with City Hall")
    embed = request.query.get("embed") == "1"
    return with_csrf(request, "citizen/chat.html", language, {
        "title": language._("Error: {title}", title=title) if summary else title,
        "heading": title, "embed": embed, "parent": parent_origin(request) if embed else "",
        "topics": _topics(request, language), "consent": consent_text(request, language),
        "texts": {key: language._(text) for key, text in TEXTS.items()},
        "summary": summary, "contact_fields": contact, "typed": left,
        "message_error": left.errors.get("l-message", ""),
        "token": secrets.token_urlsafe(24), "honeypot": HONEYPOT,
    }, status)


async def chat_page(request: web.Request) -> web.Response:
    _enabled(request)
    return _page(request, i18n.choose(request))


def _read_left(form: MultiDictProxy[Any], language: i18n.Language, region: str,
               max_body: int) -> tuple[LeftMessage, str | None, str | None]:
    """The form as typed and its problems, plus the email and phone in their normal form."""
    def one(name: str, limit: int) -> str:
        value = form.get(name, "")
        return value.strip()[:limit] if isinstance(value, str) else ""

    left = LeftMessage(one("name", 200), one("email", 254), one("phone", 40), one("topic", 64),
                       one("message", max_body + 1), {})
    email = phone = None
    try:
        email = normalize_email(left.email) if left.email else None
    except InvalidAddress:
        left.errors["l-email"] = language._(
            "Enter an email address in the right format, like name@example.com")
    try:
        phone = normalize_phone(left.phone, region) if left.phone else None
    except InvalidAddress:
        left.errors["l-phone"] = language._("Enter a phone number, like +1 212 555 0123")
    if not left.email and not left.phone:
        left.errors["l-email"] = language._(TEXTS["need_contact"])
    if not left.message:
        left.errors["l-message"] = language._(TEXTS["need_message"])
    elif len(left.message) > max_body:  # what the chat refuses too (`[webchat] max_body`)
        left.errors["l-message"] = language._("Your message must be {max} characters or fewer",
                                              max=max_body)
    return left, email, phone


async def leave_message(request: web.Request) -> web.Response:
    """The no-JavaScript path: the leave-a-message form -> a webchat conversation -> 303 to
    its tracking page."""
    _enabled(request)
    rate_limit(request)
    form = await request.post()
    check_csrf(request, str(form.get("csrf", "")))
    language = i18n.choose(request)
    if form.get(HONEYPOT):  # a bot: thanked and forgotten
        return with_csrf(request, "citizen/received.html", language,
                         {"title": language._("Thank you")})
    left, email, phone = _read_left(form, language, phone_region(request),
                                    webchat_settings(request).max_body)
    if left.errors:
        return _page(request, language, left, status=400)
    token = str(form.get("message_token", ""))
    if not TOKEN_RE.match(token):
        token = secrets.token_urlsafe(24)
    accepted = await request.app[HUB_KEY].intake.accept(_inbound(
        request, left, email, phone, token, language.code))
    raise web.HTTPSeeOther(f"/track/{accepted.reference}")


def _inbound(request: web.Request, left: LeftMessage, email: str | None, phone: str | None,
             token: str, language: str) -> InboundMessage:
    """The form as the webchat channel's message, made by the adapter's own normalisation (one
    place decides what a chat message stores). The form token is both a fresh visitor and the
    client id: a double submit is one message, and nobody's chat can be joined from here."""
    form = forms_of(request).get(left.topic)
    topic = Topic(form.id, form.queue, form.text(form.title, language)) if form else None
    profile = Profile(name=left.name or None, email=email, phone=phone,
                      topic=form.id if form else None, consent=True, leave_message=True)
    return to_inbound(f"form-{token}"[:64], ChatMessage(token[:64], left.message, profile),
                      language=language, topic=topic, phone_region=phone_region(request))


async def widget_js(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WIDGET, headers={"Content-Type": "text/javascript; charset=utf-8"})


async def chat_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare, after the citizen pages' own: `/chat` may be framed by the hub and
    `[webchat] allowed_origins` (nobody else), widget.js may be loaded by any page, and the
    chat's modules are cached like the other static files."""
    path = request.path
    if path == "/chat" or path.startswith(FILES_PATH + "/"):
        ancestors = " ".join(["'self'", *allowed_origins(request)])
    if path == "/chat":
        response.headers["Content-Security-Policy"] = PAGE_CSP.replace(
            "frame-ancestors 'none'", f"frame-ancestors {ancestors}")
        response.headers.popall("X-Frame-Options", None)
    elif path.startswith(FILES_PATH + "/"):
        # A citizen's or staff member's file: sandboxed (a script in it never runs as the
        # hub), shown in the widget's frame when its link is followed there.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src 'self'; sandbox; frame-ancestors {ancestors}")
        response.headers.popall("X-Frame-Options", None)
    elif path == "/chat/widget.js" and response.status < 400:  # a 304 too: its headers stick
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        response.headers["Cache-Control"] = "public, max-age=300"
    elif path.startswith(STATIC_PREFIX) and response.status < 400:
        response.headers.popall("Cache-Control", None)


def setup_chat(app: web.Application) -> None:
    app.router.add_get("/chat", chat_page)
    app.router.add_post("/chat", leave_message)
    app.router.add_get("/chat/widget.js", widget_js)
    app.router.add_static(STATIC_PREFIX, WEB / "static" / "chat", name="chat_static",
                          append_version=True)
    app.on_response_prepare.append(chat_headers)
