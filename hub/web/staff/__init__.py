"""The staff workspace under /staff: server-rendered pages (aiohttp-jinja2 templates in
hub/web/templates/staff), small ES modules and the style sheet (hub/web/static/staff), signed in
with a password and a server-side session.

`setup_staff(app)` mounts it as a sub-application: its middleware (hub.web.staff.guard) checks
the session and the CSRF token of every request, and every page gets a strict
Content-Security-Policy. Pages are in `pages`, actions in `actions`, bulk actions on the list
in `bulk`, administration in `admin`, live events in `live`, the reply box's helpers (canned
responses, SMS counter) in `compose`, the contact panel in `contact`, email HTML and
attachments in `mail`, SLA timers and "at risk" in `sla`, staff notifications and queue mutes
in `notifications`, the staff member's language in `i18n`.
"""

from __future__ import annotations

from aiohttp import web

from hub.web.html import WEB, setup_templates
from hub.web.keys import HUB_KEY
from hub.web.reply_upload import upload_room
from hub.web.staff import (
    accounts,
    actions,
    admin,
    bulk,
    compose,
    dashboard,
    i18n,
    mail,
    notifications,
    pages,
    setup,
)
from hub.web.staff.guard import LOGIN, PREFIX, page_headers, staff_guard
from hub.web.staff.live import staff_events

CONVERSATION = "/conversations/{id:\\d{1,18}}"


def _staff_app(app: web.Application) -> web.Application:
    staff = web.Application(middlewares=[upload_room, staff_guard])
    staff[HUB_KEY] = app[HUB_KEY]
    setup_templates(staff)
    staff.router.add_get("/", pages.workspace)
    staff.router.add_get(LOGIN.removeprefix(PREFIX), pages.login_page)
    staff.router.add_post(LOGIN.removeprefix(PREFIX), pages.login_submit)
    staff.router.add_post("/logout", pages.logout)
    staff.router.add_post("/language", i18n.choose_language)
    staff.router.add_get("/events", staff_events)
    staff.router.add_get(CONVERSATION, pages.conversation)
    staff.router.add_get(CONVERSATION + "/timeline", pages.timeline)
    staff.router.add_post(CONVERSATION + "/reply", actions.reply)
    staff.router.add_post(CONVERSATION + "/note", actions.note)
    staff.router.add_post(CONVERSATION + "/claim", actions.claim)
    staff.router.add_post(CONVERSATION + "/status", actions.set_status)
    staff.router.add_post(CONVERSATION + "/merge-contact", actions.merge_contact)
    for name in ("assign", "transfer", "priority", "tags"):
        staff.router.add_post(f"{CONVERSATION}/{name}", getattr(actions, name))
    staff.router.add_get(CONVERSATION + "/canned/{canned_id:\\d{1,18}}", compose.render_canned)
    staff.router.add_post("/sms-segments", compose.sms_segments)
    staff.router.add_post("/queues/{queue}/mute", notifications.toggle_mute)
    staff.router.add_post("/bulk", bulk.bulk)
    staff.router.add_get("/messages/{id:\\d{1,18}}/html", mail.message_html)
    staff.router.add_get("/attachments/{id:\\d{1,18}}", mail.attachment)
    staff.router.add_get("/admin/staff", admin.staff_page)
    staff.router.add_post("/admin/staff/{id:\\d{1,18}}/password", admin.set_staff_password)
    _admin_routes(staff)
    staff.router.add_static("/static/", WEB / "static" / "staff", name="static",
                            append_version=True)
    return staff


def _admin_routes(staff: web.Application) -> None:
    person = "/admin/staff/{id:\\d{1,18}}"
    staff.router.add_post("/admin/staff/add", accounts.add_person)
    staff.router.add_get(person, accounts.person_page)
    staff.router.add_post(person + "/access", accounts.set_access)
    staff.router.add_post(person + "/active", accounts.set_active)
    staff.router.add_post(person + "/tokens", accounts.new_token)
    staff.router.add_post(person + "/tokens/{token_id:\\d{1,18}}/revoke", accounts.revoke_token)
    staff.router.add_get("/admin/queues", setup.queues_page)
    staff.router.add_get("/admin/tokens", setup.tokens_page)
    staff.router.add_get("/dashboard", dashboard.dashboard)
    staff.router.add_get("/dashboard.csv", dashboard.dashboard_csv)
    staff.router.add_get("/admin/rules", setup.rules_page)


def setup_staff(app: web.Application) -> None:
    app.add_subapp(PREFIX, _staff_app(app))
    app.on_response_prepare.append(page_headers)
