"""Administration pages of the workspace (admins only): the staff accounts list, and setting a
staff member's password (which ends every web session of theirs, see hub.auth.set_password).
Changing an account is in hub.web.staff.accounts, the queues and rules views in
hub.web.staff.setup.

Others get 404, as for a page that does not exist.
"""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from hub import audit
from hub.auth import set_password
from hub.service import ADMINS, ROLES
from hub.storage.tables import Queue, Staff
from hub.web.keys import HUB_KEY
from hub.web.staff.guard import PREFIX, signed_in
from hub.web.staff.pages import frame
from hub.web.staff.queries import ListParams

MIN_PASSWORD = 8
STAFF_PAGE = f"{PREFIX}/admin/staff"


def admin_only(request: web.Request) -> None:
    if signed_in(request).staff.role not in ADMINS:
        raise web.HTTPNotFound()


async def render_staff(request: web.Request, *, error: str | None = None,
                       done: str | None = None,
                       status: int = 200) -> web.Response:
    async with request.app[HUB_KEY].db.read() as session:
        people = list(await session.scalars(select(Staff).order_by(Staff.email)))
        context = await frame(request, session, ListParams())
        queues = list(await session.scalars(select(Queue.name).order_by(Queue.name)))
    return aiohttp_jinja2.render_template("staff/admin_staff.html", request, {
        **context, "title": "Staff accounts", "people": people, "error": error,
        "done": done, "min_password": MIN_PASSWORD, "roles": ROLES, "all_queues": queues},
        status=status)


async def staff_page(request: web.Request) -> web.Response:
    admin_only(request)
    return await render_staff(request, done=request.query.get("done", "")[:320] or None)


async def set_staff_password(request: web.Request) -> web.StreamResponse:
    admin_only(request)
    form = await request.post()
    password, again = str(form.get("password", "")), str(form.get("again", ""))
    if len(password) < MIN_PASSWORD or len(password) > 1024:
        return await render_staff(request, status=422, error=(
            f"A password needs between {MIN_PASSWORD} and 1024 characters."))
    if password != again:
        return await render_staff(request, status=422, error="The two passwords differ.")
    actor = signed_in(request).staff
    async with request.app[HUB_KEY].db.transaction() as session:
        staff = await session.get(Staff, int(request.match_info["id"]))
        if staff is None:
            raise web.HTTPNotFound()
        await set_password(session, staff, password)
        audit.record(session, actor.email, "staff.password", "staff", staff.id)
        email = staff.email
    raise web.HTTPSeeOther(f"{STAFF_PAGE}?done={email}")
