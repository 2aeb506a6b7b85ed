"""The workspace's pages: sign-in and sign-out, the conversation list with the sidebar of the
staff member's queues, and one conversation (timeline, "why is this here?", reply and note).

Server-rendered with aiohttp-jinja2 (autoescape on: whatever a citizen wrote is text); small ES
modules from /staff/static add live updates. Lists and details are the API's queries
(hub.service for visibility, hub.web.views for the shapes).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from hub import service
from hub.web import cursor
from hub.web.errors import ApiError
from hub.web.keys import HUB_KEY
from hub.web.staff import i18n, notifications, sessions
from hub.web.staff.choices import action_choices, list_choices
from hub.web.staff.compose import canned_options, files_offer, sms_label
from hub.web.staff.contact import contact_panel
from hub.web.staff.guard import (
    LOGIN,
    PREFIX,
    clear_session_cookie,
    login_csrf,
    set_login_csrf_cookie,
    set_session_cookie,
    signed_in,
)
from hub.web.staff.mail import html_message_ids, is_safe_image
from hub.web.staff.queries import (
    PAGE_SIZE,
    STATUSES,
    VIEWS,
    ListParams,
    identities_of,
    list_params,
    queue_counts,
    reply_channels,
)
from hub.web.staff.sla import pending_timers, risk_horizon
from hub.web.staff.trace import trace_rows
from hub.web.views import conversation_detail, conversation_list

Context = dict[str, Any]
LOCKED_MESSAGE = ("This account is locked after too many wrong passwords. Try again in "
                  "{minutes} minutes, or ask an administrator to set a new password.")
WRONG_MESSAGE = "The email or the password is wrong."


# -- signing in and out -----------------------------------------------------------------------


def _login_form(request: web.Request, *, email: str = "", error: str | None = None,
                status: int = 200) -> web.Response:
    token, fresh = login_csrf(request)
    page = aiohttp_jinja2.render_template(
        "staff/login.html", request,
        {"title": "Sign in", "csrf": token, "email": email, "error": error,
         "lock_minutes": sessions.LOCK_MINUTES}, status=status)
    if fresh:
        set_login_csrf_cookie(request, page, token)
    return page


async def login_page(request: web.Request) -> web.Response:
    return _login_form(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email, password = str(form.get("email", ""))[:320], str(form.get("password", ""))[:1024]
    hub = request.app[HUB_KEY]
    outcome, staff_id = await sessions.check_login(
        hub.db, email, password, hub.settings.security.max_login_attempts)
    if outcome is sessions.Outcome.LOCKED:
        return _login_form(request, email=email, error=LOCKED_MESSAGE, status=429)
    if staff_id is None:
        return _login_form(request, email=email, error=WRONG_MESSAGE, status=401)
    token = await sessions.start(hub.db, staff_id, hub.settings.security.session_hours)
    response = web.HTTPSeeOther(f"{PREFIX}/")
    set_session_cookie(request, response, token)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    await sessions.end(request.app[HUB_KEY].db, signed_in(request).token_hash)
    response = web.HTTPSeeOther(LOGIN)
    clear_session_cookie(response)
    raise response


# -- the list ---------------------------------------------------------------------------------


async def frame(request: web.Request, session: Any, params: ListParams) -> Context:
    """What every signed-in page shows: who, the CSRF token, the sidebar."""
    who = signed_in(request)
    hub = request.app[HUB_KEY]
    return {"me": who.staff, "csrf": who.csrf_token, "params": params, "views": VIEWS,
            "statuses": STATUSES, "channels": hub.adapters.names(),
            "queues": await queue_counts(session, who.staff, _risk_before(request)),
            **await notifications.sidebar(session, who.staff)}


def _risk_before(request: web.Request) -> datetime:
    return risk_horizon(request.app[HUB_KEY].settings.routing.sla_risk_minutes)


def _after(request: web.Request, params: ListParams) -> Any:
    if params.cursor is None:
        return None
    try:
        return cursor.decode_time_id(request.app[HUB_KEY].reply_secret, "staff-list",
                                     params.cursor)
    except ApiError:
        return None  # a stale or edited link: start from the first page


async def workspace(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    params = list_params(request.query, hub.adapters.names())
    staff = signed_in(request).staff
    async with hub.db.read() as session:
        where = params.filter(_after(request, params), _risk_before(request))
        rows = await service.list_items(session, staff, where, PAGE_SIZE + 1)
        page = rows[:PAGE_SIZE]
        more = None
        if len(rows) > PAGE_SIZE:
            more = cursor.encode_time_id(hub.reply_secret, "staff-list",
                                         page[-1].last_message_at, page[-1].id)
        listing = await conversation_list(session, page, more)
        context = await frame(request, session, params)
        context |= await list_choices(session)
    _ = i18n.gettext(request)._
    title = (_("{view} in {queue}", view=_(VIEWS[params.view]), queue=params.queue)
             if params.queue else _(VIEWS[params.view]))
    return aiohttp_jinja2.render_template("staff/list.html", request, {
        **context, "title": title, "items": listing.items, "next_cursor": more})


# -- one conversation -------------------------------------------------------------------------


def _conversation_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def conversation_context(request: web.Request, conversation_id: int) -> Context:
    hub = request.app[HUB_KEY]
    staff = signed_in(request).staff
    async with hub.db.read() as session:
        try:
            row = await service.item_for(session, staff, conversation_id)
        except service.NotFound:
            raise web.HTTPNotFound() from None
        detail = await conversation_detail(session, row)
        identities = await identities_of(session, detail.contact.id)
        context = {
            **await frame(request, session, ListParams()),
            "contact": await contact_panel(session, staff, detail.contact.id, detail.id,
                                           identities),
            "canned": await canned_options(session, staff, detail.queue),
            "with_html": await html_message_ids(session, detail.id),
            "sla_timers": await pending_timers(
                session, detail.id, hub.settings.routing.sla_risk_minutes),
            **await action_choices(session, detail.queue),
            "safe_image": is_safe_image}
    channels = reply_channels(identities, hub.adapters.names())
    usable = [o.channel for o in channels if not o.opted_out]
    return {**context, "title": f"{detail.reference}: {detail.subject or 'no subject'}",
            "c": detail, "trace": trace_rows(detail.routing.trace),
            "reply_channels": channels, "after": max((m.id for m in detail.messages), default=0),
            "default_channel": detail.channel if detail.channel in usable else next(
                iter(usable), None), **_html_view(request)}


def _number(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    return int(value) if value.isdigit() and len(value) <= 18 else None


def _html_view(request: web.Request) -> Context:
    """What the page's links ask to show: which message's HTML (`html`), with remote images
    (`images`), and the newest message seen before a held reply (`seen`, marks "New")."""
    return {"html_open": _number(request, "html"), "seen": _number(request, "seen"),
            "html_images": request.query.get("images") == "1"}


def compose_context(request: web.Request, context: Context, draft: str) -> Context:
    """The reply box's counter for `draft` when the reply may go by SMS, and its file input
    when a channel of the contact carries files."""
    by_sms = any(o.channel == "sms" and not o.opted_out for o in context["reply_channels"])
    hub = request.app[HUB_KEY]
    max_segments = hub.settings.sms.max_segments
    return {"sms_counter": sms_label(draft, max_segments) if by_sms else None,
            "reply_files": files_offer(hub.adapters, context["reply_channels"],
                                       hub.settings.hub.max_reply_attachment_bytes)}


async def conversation(request: web.Request) -> web.Response:
    context = await conversation_context(request, _conversation_id(request))
    context["done"] = request.query.get("done", "")[:20]
    context.update(compose_context(request, context, ""))
    return aiohttp_jinja2.render_template("staff/conversation.html", request, context)


async def timeline(request: web.Request) -> web.Response:
    """The timeline alone, for the page's live updates."""
    context = await conversation_context(request, _conversation_id(request))
    return aiohttp_jinja2.render_template("staff/_timeline.html", request, context)
